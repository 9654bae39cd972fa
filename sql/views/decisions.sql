-- One routing decision per request (the first copy).
CREATE VIEW decisions AS
SELECT * FROM routing_decisions t
WHERE NOT EXISTS (
    SELECT 1 FROM routing_decisions earlier
    WHERE earlier.request_id = t.request_id
      AND (earlier._timestamp < t._timestamp
           OR (earlier._timestamp = t._timestamp
               AND (earlier._partition < t._partition
                    OR (earlier._partition = t._partition AND earlier._offset < t._offset))))
)
