-- One edge proposal per request (the first copy).
CREATE VIEW proposals AS
SELECT * EXCLUDE (copy) FROM (
    SELECT *, ROW_NUMBER() OVER (PARTITION BY request_request_id ORDER BY _timestamp, _partition, _offset) AS copy
    FROM edge_proposals
) WHERE copy = 1
