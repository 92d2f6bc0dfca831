-- Sample SQL job: for each product review, in pure SQL and in ONE job,
--   sentiment  a free-text answer (ai_complete, configured by the shared 'ai.' job parameters)
--   topic      one label out of a fixed list (a function named classify, configured on its own)
--   stars, would_recommend, complaints
--              fields extracted as validated JSON (ai_extract_async with a Flink ROW type)
--   summary    one sentence made from two columns (a function named summarize, with its own
--              model, token cap and prompt template)
--   embedding  a vector of the review (ai_embed, its model under 'ai.embed.')
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
-- ai_extract(text, schema) answers with JSON that matches the schema (checked; a reply that does
-- not match is asked again). The async form is used here because the query reads its result
-- three times (JSON_VALUE per field): Flink makes one call of an async function for all three,
-- but copies a vectorized function's call into each, which would cost three requests a row.
CREATE TEMPORARY FUNCTION ai_extract_async AS 'flink_llm_udf.sql.ai_extract_async' LANGUAGE PYTHON;
-- Functions with a name of your choice, each configured by the job parameters under
-- 'ai.<name>.' first and then 'ai.': 'flink_llm_udf.sql.<kind>.<name>' where <kind> is
-- complete, classify, extract or embed (or their _async forms).
CREATE TEMPORARY FUNCTION classify AS 'flink_llm_udf.sql.classify.classify' LANGUAGE PYTHON;
CREATE TEMPORARY FUNCTION summarize AS 'flink_llm_udf.sql.complete.summarize' LANGUAGE PYTHON;

-- The functions read their options from job parameters: 'ai.' for all of them (endpoint, model,
-- requests in flight), 'ai.embed.' for embeddings, 'ai.classify.' and 'ai.summarize.' for the
-- named functions:
--   classify   its own system prompt, and temperature 0 (the same answer every time)
--   summarize  another model, at most 60 tokens, and a prompt template: {product} and {review}
--              are filled in from the JSON_OBJECT the query passes (a NULL field: no request,
--              NULL summary); braces or quotes inside the data are sent as they are
-- Flink splits this value at ',' and then at ':', so a value containing either (every URL) must
-- be double-quoted inside it; flink_llm_udf.job_parameters.job_parameters_value renders a dict.
-- Leave ai.endpoint out to use OPENAI_BASE_URL of the workers.
SET 'pipeline.global-job-parameters' = 'ai.endpoint:"http://127.0.0.1:8000/v1",ai.model:gpt-4o-mini,ai.embed.model:text-embedding-3-small,ai.max-concurrency:64,ai.classify.system-prompt:"Which topic does this product review mostly talk about?",ai.classify.temperature:0,ai.summarize.model:gpt-4o,ai.summarize.max-tokens:60,ai.summarize.prompt-template:"Summarise this review of a {product} in one sentence. {review}"';
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
    topic STRING,
    stars INT,
    would_recommend BOOLEAN,
    complaints STRING,
    summary STRING,
    embedding ARRAY<FLOAT>
) WITH (
    'connector' = 'filesystem',
    'path' = 'out/reviews-sql',
    'format' = 'json'
);

-- One job: each function sends its own requests, with its own options, as the rows stream by.
INSERT INTO reviews_sentiment
SELECT id, review, sentiment, topic,
       -- read fields out of the validated JSON; RETURNING gives them their SQL types
       JSON_VALUE(details, '$.stars' RETURNING INT) AS stars,
       JSON_VALUE(details, '$.would_recommend' RETURNING BOOLEAN) AS would_recommend,
       JSON_QUERY(details, '$.complaints') AS complaints,
       summary, embedding
FROM (
    SELECT id, review,
           ai_complete(review) AS sentiment,
           -- labels: one comma-separated string (or an ARRAY of strings), and the answer is
           -- always exactly one of them
           classify(review, 'quality,delivery,price,service,other') AS topic,
           -- the schema: a Flink ROW type (or a JSON schema text)
           ai_extract_async(review, 'ROW<stars INT, would_recommend BOOLEAN, complaints ARRAY<STRING>>') AS details,
           summarize(JSON_OBJECT('product' VALUE product, 'review' VALUE review)) AS summary,
           ai_embed(review) AS embedding
    FROM reviews
);
