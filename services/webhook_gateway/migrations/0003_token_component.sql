-- A CI token belongs to one component, not to a name: a component deleted and created again under the
-- same name is another component (another id), and its predecessor's tokens must not work for it.
-- Tokens made before this migration have no id and keep working for the name.
ALTER TABLE ci_tokens ADD COLUMN component_id text;
