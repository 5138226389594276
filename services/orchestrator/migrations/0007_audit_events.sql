-- The audit trail of every service: what the AUDIT stream delivered, recorded once per event id
-- (a redelivery inserts nothing). Ids are time-ordered, so (org, id DESC) is newest first and the
-- id of a page's last item is where the next page starts.
CREATE TABLE audit_events (
    id               text COLLATE "C" PRIMARY KEY,  -- ids sort by time in byte order
    org              text NOT NULL,
    time             timestamptz NOT NULL,
    service          text NOT NULL,
    actor_type       text NOT NULL,
    actor_id         text,
    actor_name       text,
    actor_component  text,
    action           text NOT NULL,
    target           text NOT NULL,
    outcome          text NOT NULL,
    status           integer NOT NULL,
    request_id       text,
    detail           text NOT NULL DEFAULT '',
    recorded_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX audit_events_org_id ON audit_events (org, id DESC);
