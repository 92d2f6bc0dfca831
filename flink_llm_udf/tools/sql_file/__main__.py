"""``python -m flink_llm_udf.tools.sql_file``: what ``flink run -pym`` runs on a cluster's client."""

import sys

from .cli import main

sys.exit(main())
