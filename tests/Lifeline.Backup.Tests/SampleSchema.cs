namespace Lifeline.Backup.Tests;

/// <summary>
/// The tables the tests back up: an identity-keyed table with JSON and large (TOASTed) text, a table
/// without a primary key (REPLICA IDENTITY FULL, duplicate rows), a serial-keyed table with bytea, and
/// an EF Core migrations history (the recorded schema version).
/// </summary>
public static class SampleSchema
{
    public const string Create = """
        CREATE TABLE items (
            id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            name text NOT NULL,
            qty int,
            payload jsonb,
            note text,
            total numeric(12,2) GENERATED ALWAYS AS (qty * 1.5) STORED
        );
        CREATE TABLE tags (item_id bigint, tag text);
        CREATE TABLE events (id serial PRIMARY KEY, at timestamptz NOT NULL DEFAULT now(), data bytea);
        CREATE TABLE "__EFMigrationsHistory" ("MigrationId" varchar(150) PRIMARY KEY, "ProductVersion" varchar(32) NOT NULL);
        INSERT INTO "__EFMigrationsHistory" VALUES ('20260101000000_InitialSchema', '10.0.14');
        """;

    public static string Seed(int rows) => $"""
        INSERT INTO items (name, qty, payload, note)
        SELECT 'item ' || g, g % 17, jsonb_build_object('n', g, 's', 'v' || g), CASE WHEN g % 50 = 0 THEN repeat('long note ', 1000) END
        FROM generate_series(1, {rows}) g;
        INSERT INTO tags SELECT g, 'tag' || (g % 5) FROM generate_series(1, {rows}) g;
        INSERT INTO tags SELECT g, 'dup' FROM generate_series(1, 10) g;
        INSERT INTO tags SELECT g, 'dup' FROM generate_series(1, 10) g;
        INSERT INTO events (data) SELECT decode(md5(g::text), 'hex') FROM generate_series(1, {rows}) g;
        """;

    /// <summary>Inserts, updates (also of rows with TOASTed values left unchanged), deletes — including one of two identical rows.</summary>
    public static string Changes(int round) => $$"""
        INSERT INTO items (name, qty, payload, note) VALUES
            ('round {{round}} quote '' and backslash \ and newline
        here', {{round}}, '{"round": {{round}}, "text": "a\"b"}', NULL),
            ('round {{round}} null qty', NULL, NULL, 'tab	inside');
        UPDATE items SET qty = coalesce(qty, 0) + {{round}} WHERE id % 7 = {{round % 7}};
        UPDATE items SET name = name || ' renamed {{round}}' WHERE note IS NOT NULL AND id % 100 = 50;
        DELETE FROM items WHERE id % 11 = {{round % 11}} AND id > 20;
        DELETE FROM tags WHERE ctid = (SELECT ctid FROM tags WHERE tag = 'dup' AND item_id = {{round % 10 + 1}} LIMIT 1);
        UPDATE tags SET tag = 'changed {{round}}' WHERE item_id = {{round + 20}};
        INSERT INTO tags VALUES (NULL, 'null item {{round}}'), ({{round}}, NULL);
        INSERT INTO events (data) VALUES ('\x00ff{{round:x2}}'::bytea);
        DELETE FROM events WHERE id = {{round + 2}};
        """;
}
