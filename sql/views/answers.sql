-- One final answer per request (the first copy).
CREATE VIEW answers AS
SELECT * EXCLUDE (copy) FROM (
    SELECT *, ROW_NUMBER() OVER (PARTITION BY request_id ORDER BY _timestamp, _partition, _offset) AS copy
    FROM agent_responses
) WHERE copy = 1
