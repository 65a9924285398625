"""A small LangGraph agent whose state and memory live in one SQLite file through dmem.

    python examples/langgraph_agent.py [path/to/agent.db]
    python examples/langgraph_agent.py [path/to/agent.db]   # again: it resumes

* short-term memory: the conversation thread, checkpointed by ``DmemSaver``;
* long-term memory: facts about the user, in ``DmemStore`` (``langgraph.store.dmem``).

The chat model is langchain-core's deterministic ``FakeListChatModel``, so it runs offline.
Each run sends the next user message of a short script; the second run finds the first
run's messages in the thread and the user's name in the store.

Needs ``pip install 'dmem[langgraph]' langgraph``. The default file is in the temp dir.
"""

from __future__ import annotations

import re
import sys
import tempfile
from pathlib import Path
from typing import Any

from langchain_core.language_models.fake_chat_models import FakeListChatModel
from langchain_core.messages import AnyMessage, HumanMessage, SystemMessage
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.dmem import DmemSaver
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.runtime import Runtime
from langgraph.store.dmem import DmemStore

THREAD: RunnableConfig = {"configurable": {"thread_id": "demo-conversation"}}
USER = "ada"
# One user message per run, and what the fake model answers to it ({name}: the name the
# long-term memory holds when the model is called).
SCRIPT = [
    ("Hi, my name is Ada.", "Nice to meet you, {name}! I'll remember your name."),
    ("Do you still know who I am?", "Of course: you are {name}. Welcome back!"),
    ("Thanks, bye.", "Goodbye, {name}."),
]
NAME = re.compile(r"my name is (\w+)", re.IGNORECASE)


def remember(state: MessagesState, runtime: Runtime[None]) -> dict[str, Any]:
    """Long-term memory: a name the user gives is kept in the store, across threads."""
    assert runtime.store is not None
    last = state["messages"][-1]
    if isinstance(last.content, str) and (found := NAME.search(last.content)):
        runtime.store.put(("users", USER), "profile", {"name": found.group(1)})
    return {}


def chat(state: MessagesState, runtime: Runtime[None]) -> dict[str, Any]:
    assert runtime.store is not None
    profile = runtime.store.get(("users", USER), "profile")
    name = profile.value["name"] if profile else "stranger"
    known = f"The user's name is {name}." if profile else "Unknown user."
    turn = sum(isinstance(m, HumanMessage) for m in state["messages"]) - 1
    reply = SCRIPT[min(turn, len(SCRIPT) - 1)][1].format(name=name)
    model = FakeListChatModel(responses=[reply])
    prompt: list[AnyMessage] = [SystemMessage(known), *state["messages"]]
    return {"messages": [model.invoke(prompt)]}


def build() -> StateGraph[MessagesState, None, MessagesState, MessagesState]:
    builder = StateGraph(MessagesState)
    builder.add_node("remember", remember)
    builder.add_node("chat", chat)
    builder.add_edge(START, "remember")
    builder.add_edge("remember", "chat")
    builder.add_edge("chat", END)
    return builder


def main(path: Path) -> None:
    url = f"sqlite:///{path}"
    with (
        DmemSaver.from_conn_string(url, namespace="agent-checkpoints") as checkpointer,
        DmemStore.from_conn_string(url, namespace="agent-memory") as store,
    ):
        graph = build().compile(checkpointer=checkpointer, store=store)
        earlier = graph.get_state(THREAD).values.get("messages", [])
        profile = store.get(("users", USER), "profile")
        if earlier:
            print(f"resumed thread with {len(earlier)} earlier messages; the last one was:")
            print(f"  {earlier[-1].type}: {earlier[-1].content}")
        else:
            print("new thread")
        print("memory:", profile.value if profile else None)
        turn = sum(m.type == "human" for m in earlier)
        text = SCRIPT[min(turn, len(SCRIPT) - 1)][0]
        inputs: MessagesState = {"messages": [HumanMessage(text)]}
        result = graph.invoke(inputs, THREAD)
        print(f"user: {text}")
        print(f"assistant: {result['messages'][-1].content}")
        print(f"thread now has {len(result['messages'])} messages; stored in {path}")


if __name__ == "__main__":
    default = Path(tempfile.gettempdir()) / "dmem-langgraph-agent.db"
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else default)
