"""``python -m flink_llm_udf.simulator [flags]``; see :mod:`._cli`."""

import sys

from ._cli import main

sys.exit(main())
