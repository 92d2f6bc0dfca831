-- Sample SQL job: sentiment and embedding of each product review, in pure SQL.
--
-- Start an endpoint first, e.g. the simulator:   flink-llm simulator --port 8000 --latency-ms 100
-- then, from the repository root (the paths below are relative to it):
--     flink-llm sql -f jobs/reviews.sql
-- Flink's own sql-client.sh works too where it is complete (the official Docker image; the
-- apache-flink wheel lacks the SQL gateway): sql-client.sh -f jobs/reviews.sql, with this
-- package installed in the Python the workers run.
--
-- Paths: the filesystem connector resolves a relative path against the working directory of the
-- process that opens the file: where you started the run for a local mini-cluster, the
-- TaskManager's on a cluster. On a cluster write absolute paths (file:///..., s3://...) instead.
-- The API key is never written here: the workers read OPENAI_API_KEY_FILE (a file holding the
-- key) from their environment; Flink logs the Python workers' environment variables, so do not
-- export the key itself as OPENAI_API_KEY on a cluster.

CREATE TEMPORARY FUNCTION ai_complete AS 'flink_llm_udf.sql.ai_complete' LANGUAGE PYTHON;
CREATE TEMPORARY FUNCTION ai_embed AS 'flink_llm_udf.sql.ai_embed' LANGUAGE PYTHON;

-- The functions read their options from job parameters under 'ai.' (embeddings prefer 'ai.embed.').
-- A value containing ':' (every URL) must be double-quoted inside the map, or Flink cannot
-- split it into key and value. Leave ai.endpoint out to use OPENAI_BASE_URL of the workers.
SET 'pipeline.global-job-parameters' = 'ai.endpoint:"http://127.0.0.1:8000/v1",ai.model:gpt-4o-mini,ai.embed.model:text-embedding-3-small,ai.max-concurrency:64';
-- flink-llm sql also accepts one key per statement and turns it into a job parameter:
--   SET 'ai.model' = 'gpt-4o-mini';

-- Flink settings for 64 requests in flight: flink_llm_udf.flink.sql_set_statements(64)
SET 'python.fn-execution.arrow.batch.size' = '6400';
SET 'python.fn-execution.bundle.size' = '12800';
SET 'python.fn-execution.bundle.time' = '50';
SET 'table.exec.async-scalar.max-concurrent-operations' = '1024';
SET 'table.exec.async-scalar.timeout' = '0 ms';
SET 'table.exec.async-scalar.retry-strategy' = 'NO_RETRY';

SET 'pipeline.name' = 'flink-llm reviews (SQL)';

CREATE TEMPORARY TABLE reviews (
    id INT,
    product STRING,
    rating INT,
    review STRING
) WITH (
    'connector' = 'filesystem',
    'path' = 'jobs/data/reviews.jsonl',
    'format' = 'json'
);

CREATE TEMPORARY TABLE reviews_sentiment (
    id INT,
    review STRING,
    sentiment STRING,
    embedding ARRAY<FLOAT>
) WITH (
    'connector' = 'filesystem',
    'path' = 'out/reviews-sql',
    'format' = 'json'
);

INSERT INTO reviews_sentiment
SELECT id, review, ai_complete(review) AS sentiment, ai_embed(review) AS embedding
FROM reviews;
