"""``python -m flink_llm_udf.tools.cluster``: the same as ``flink-llm cluster``."""

import sys

from .cli import main

sys.exit(main())
