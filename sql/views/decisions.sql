-- One routing decision per request (the first copy).
CREATE VIEW decisions AS
SELECT * EXCLUDE (copy) FROM (
    SELECT *, ROW_NUMBER() OVER (PARTITION BY request_id ORDER BY _timestamp, _partition, _offset) AS copy
    FROM routing_decisions
) WHERE copy = 1
