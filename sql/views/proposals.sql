-- One edge proposal per request (the first copy).
CREATE VIEW proposals AS
SELECT * FROM edge_proposals t
WHERE NOT EXISTS (
    SELECT 1 FROM edge_proposals earlier
    WHERE earlier.request_request_id = t.request_request_id
      AND (earlier._timestamp < t._timestamp
           OR (earlier._timestamp = t._timestamp
               AND (earlier._partition < t._partition
                    OR (earlier._partition = t._partition AND earlier._offset < t._offset))))
)
