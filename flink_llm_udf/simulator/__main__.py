"""``python -m flink_llm_udf.simulator [flags]``; see :mod:`.cli`."""

import sys

from .cli import main

sys.exit(main())
