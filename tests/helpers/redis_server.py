"""A real ``redis-server`` on 127.0.0.1 for tests: the bench's own (one implementation), with a
password, a Unix socket, and ``stop()`` then ``start()`` on the same port for an outage."""

from flink_llm_udf.tools.bench.redis_server import RedisServer, free_port, redis_server_executable

__all__ = ["RedisServer", "free_port", "redis_server_executable"]
