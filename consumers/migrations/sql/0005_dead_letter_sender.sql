-- Dead letters belong to whoever sent the refused record: over Kafka the record key (the
-- source id a department keys its records with), over HTTP the API key's source. `source`
-- stays the source the record's body named (when it is a registered one).
-- Rows written before this migration have no sender: readers take COALESCE(sender, source),
-- and the index is on that expression, so no existing row is rewritten. Both storage paths.
ALTER TABLE dead_letters ADD COLUMN sender text NULL;
CREATE INDEX dead_letters_sender_idx
    ON dead_letters ((COALESCE(sender, source)), received_at DESC);
