-- Message search (console, wasla messages search): every filter has an index that also orders by
-- time, so a page of the newest matches is read from the index, never by scanning the table.
CREATE INDEX ix_messages_type_time ON messages (message_type, received_at);
CREATE INDEX ix_messages_sender_time ON messages (sender, received_at);
CREATE INDEX ix_messages_time ON messages (received_at);
CREATE INDEX ix_outputs_destination_message ON outputs (destination, message_id);
