using System.Text;

namespace Lifeline.Backup.Engine;

/// <summary>A decoded table: its name, columns and how its rows are identified.</summary>
public sealed record ChangeRelation(string Schema, string Name, IReadOnlyList<string> Columns, IReadOnlyList<bool> IsKey,
    bool FullIdentity, IReadOnlySet<string> IdentityAlways)
{
    public string QualifiedName => $"{DatabaseInspector.Quote(Schema)}.{DatabaseInspector.Quote(Name)}";
}

/// <summary>One column value of a decoded row: SQL NULL, unchanged (a TOASTed value an update did not touch), or text.</summary>
public readonly record struct ChangeValue(string? Text, bool Unchanged)
{
    public static ChangeValue Null => new(null, false);
    public static ChangeValue NotChanged => new(null, true);
}

/// <summary>
/// Turns decoded changes into SQL statements, one per line (literals escape newlines), that replay them
/// on a restored copy. Rows are identified by their replica identity: key columns, or — for tables without
/// a key (REPLICA IDENTITY FULL) — the old row itself, matching one physical row so duplicates stay right.
/// </summary>
public static class ChangeSql
{
    /// <summary>An escape-string literal on one line; the server casts it to the column's type.</summary>
    public static string Literal(string value)
    {
        var sb = new StringBuilder(value.Length + 4).Append("E'");
        foreach (var c in value)
        {
            switch (c)
            {
                case '\\': sb.Append(@"\\"); break;
                case '\'': sb.Append("''"); break;
                case '\n': sb.Append(@"\n"); break;
                case '\r': sb.Append(@"\r"); break;
                default: sb.Append(c); break;
            }
        }
        return sb.Append('\'').ToString();
    }

    private static string Value(ChangeValue v) => v.Text is null ? "NULL" : Literal(v.Text);

    public static string Insert(ChangeRelation r, IReadOnlyList<ChangeValue> row)
    {
        var columns = new List<string>();
        var values = new List<string>();
        for (var i = 0; i < r.Columns.Count; i++)
        {
            if (!row[i].Unchanged)
            {
                columns.Add(DatabaseInspector.Quote(r.Columns[i]));
                values.Add(Value(row[i]));
            }
        }
        // OVERRIDING SYSTEM VALUE: identity columns GENERATED ALWAYS take the original values.
        return $"INSERT INTO {r.QualifiedName} ({string.Join(", ", columns)}) OVERRIDING SYSTEM VALUE VALUES ({string.Join(", ", values)})";
    }

    /// <summary><paramref name="oldRow"/>: the old key or old row when the server sent one, else null (the key is in the new row).</summary>
    public static string Update(ChangeRelation r, IReadOnlyList<ChangeValue>? oldRow, IReadOnlyList<ChangeValue> newRow)
    {
        var sets = new List<string>();
        for (var i = 0; i < r.Columns.Count; i++)
        {
            // Unchanged TOAST values keep their stored value; identity ALWAYS columns cannot be assigned (and never change).
            if (!newRow[i].Unchanged && !r.IdentityAlways.Contains(r.Columns[i]))
            {
                sets.Add($"{DatabaseInspector.Quote(r.Columns[i])} = {Value(newRow[i])}");
            }
        }
        if (sets.Count == 0)
        {
            return "SELECT 1";
        }
        return $"UPDATE {r.QualifiedName} SET {string.Join(", ", sets)} WHERE {Identify(r, oldRow ?? newRow)}";
    }

    public static string Delete(ChangeRelation r, IReadOnlyList<ChangeValue> oldRow) =>
        $"DELETE FROM {r.QualifiedName} WHERE {Identify(r, oldRow)}";

    public static string Truncate(IEnumerable<ChangeRelation> relations, bool restartIdentity, bool cascade) =>
        $"TRUNCATE ONLY {string.Join(", ", relations.Select(r => r.QualifiedName))}" +
        (restartIdentity ? " RESTART IDENTITY" : "") + (cascade ? " CASCADE" : "");

    private static string Identify(ChangeRelation r, IReadOnlyList<ChangeValue> row)
    {
        var conditions = new List<string>();
        for (var i = 0; i < r.Columns.Count; i++)
        {
            if ((r.FullIdentity || r.IsKey[i]) && !row[i].Unchanged)
            {
                var column = DatabaseInspector.Quote(r.Columns[i]);
                conditions.Add(row[i].Text is null ? $"{column} IS NULL"
                    // Text comparison works for every type (json, point… have no equality operator) and round-trips exactly.
                    : r.FullIdentity ? $"{column}::text = {Literal(row[i].Text!)}" : $"{column} = {Literal(row[i].Text!)}");
            }
        }
        var where = conditions.Count == 0 ? "false" : string.Join(" AND ", conditions);
        return r.FullIdentity
            ? $"ctid = (SELECT ctid FROM {r.QualifiedName} WHERE {where} LIMIT 1)"
            : where;
    }
}
