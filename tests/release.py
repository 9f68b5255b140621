"""What the suite expects of the installed Vela release, where releases genuinely differ.

Before Vela 5.0 the Python (legacy) core is the default for Ethos-U55 and U65 and
``--debug-force-regor`` selects the C++ (regor) core; from 5.0 regor is the default and
``--debug-force-legacy-core`` selects the legacy core.  The cores name operators differently
(``CONV_2D`` vs ``Conv2D``) and only regor lists the CPU's operators in its per-layer table.
"""

from __future__ import annotations

from pytest_ethosu.vela import expected_core, vela_version, version_tuple

VERSION = vela_version()
OLD = version_tuple() < (5,)

#: The core Vela uses on Ethos-U55/U65 without options, and the options that select the other.
DEFAULT_CORE = expected_core("ethos-u65-256", ())
OTHER_CORE = "regor" if DEFAULT_CORE == "legacy" else "legacy"
OTHER_CORE_ARGS = ["--debug-force-regor"] if OLD else ["--debug-force-legacy-core"]
CORE_ARGS = {DEFAULT_CORE: [], OTHER_CORE: OTHER_CORE_ARGS}

_NAMES = {"Conv2D": "CONV_2D", "DepthwiseConv2D": "DEPTHWISE_CONV_2D", "FullyConnected": "FULLY_CONNECTED",
          "MaxPool": "MAX_POOL_2D"}


def op(name: str, core: str = DEFAULT_CORE) -> str:
    """An operator as ``core`` names it in its per-layer table, from regor's name."""
    return _NAMES.get(name, name) if core == "legacy" else name
