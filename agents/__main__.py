"""``python -m agents ROLE --settings JSON``: what ``latencylab agent`` and ``latencylab
converter`` run (the SDK's CLI starts the agent side without importing it).

``--settings`` holds ``AgentSettings`` fields; the environment (``LATENCYLAB_AGENT_*``) fills
in the rest, as it does for any agent.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from typing import Any

from agents import agent, converter
from agents.config import AgentSettings

ROLES: dict[str, Callable[[Any], None]] = {"agent": agent.main, "converter": converter.main}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m agents", description=__doc__)
    parser.add_argument("role", choices=sorted(ROLES))
    parser.add_argument("--settings", default="{}", help="AgentSettings fields as JSON")
    args = parser.parse_args(argv)
    ROLES[args.role](AgentSettings(**json.loads(args.settings)))


if __name__ == "__main__":
    main()
