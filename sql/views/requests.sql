-- One row per request: the first copy of each tool request (the bus is
-- at-least-once, so a request can be logged more than once).
CREATE VIEW requests AS
SELECT * EXCLUDE (copy) FROM (
    SELECT *, ROW_NUMBER() OVER (PARTITION BY request_id ORDER BY _timestamp, _partition, _offset) AS copy
    FROM tool_requests
) WHERE copy = 1
