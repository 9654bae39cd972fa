-- One final answer per request (the first copy).
CREATE VIEW answers AS
SELECT * FROM agent_responses t
WHERE NOT EXISTS (
    SELECT 1 FROM agent_responses earlier
    WHERE earlier.request_id = t.request_id
      AND (earlier._timestamp < t._timestamp
           OR (earlier._timestamp = t._timestamp
               AND (earlier._partition < t._partition
                    OR (earlier._partition = t._partition AND earlier._offset < t._offset))))
)
