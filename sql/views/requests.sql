-- One row per request: the first copy of each tool request (the bus is
-- at-least-once, so a request can be logged more than once).
-- "First" is the earliest (_timestamp, _partition, _offset); written as an
-- anti join (no earlier copy exists) rather than ROW_NUMBER() = 1: the same
-- result, and several times faster in DataFusion (`netgpt bench datasets`).
CREATE VIEW requests AS
SELECT * FROM tool_requests t
WHERE NOT EXISTS (
    SELECT 1 FROM tool_requests earlier
    WHERE earlier.request_id = t.request_id
      AND (earlier._timestamp < t._timestamp
           OR (earlier._timestamp = t._timestamp
               AND (earlier._partition < t._partition
                    OR (earlier._partition = t._partition AND earlier._offset < t._offset))))
)
