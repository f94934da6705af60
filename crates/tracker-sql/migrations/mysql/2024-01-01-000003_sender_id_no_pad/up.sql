-- `utf8mb4_bin` is a PAD SPACE collation: 'alice' and 'alice ' compare equal and would share
-- a conversation. Switch sender ids to the server's binary NO PAD collation: MariaDB's
-- `utf8mb4_nopad_bin` or MySQL 8's `utf8mb4_0900_bin`. A server with neither (MySQL 5.7)
-- keeps `utf8mb4_bin`.
SET @tracker_collation = (
    SELECT COLLATION_NAME FROM information_schema.COLLATIONS
    WHERE COLLATION_NAME IN ('utf8mb4_nopad_bin', 'utf8mb4_0900_bin')
    ORDER BY COLLATION_NAME DESC LIMIT 1
);
SET @tracker_ddl = IF(
    @tracker_collation IS NULL,
    'DO 0',
    CONCAT('ALTER TABLE events MODIFY sender_id VARCHAR(255) CHARACTER SET utf8mb4 COLLATE ',
           @tracker_collation, ' NOT NULL')
);
PREPARE tracker_stmt FROM @tracker_ddl;
EXECUTE tracker_stmt;
DEALLOCATE PREPARE tracker_stmt;
