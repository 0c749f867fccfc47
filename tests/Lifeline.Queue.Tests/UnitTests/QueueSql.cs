using System.Reflection;
using System.Text.RegularExpressions;
using Lifeline.Queue.Domain;

namespace Lifeline.Queue.Tests.UnitTests;

/// <summary>
/// The queue's SQL statements as the service holds them (static string fields, or the <c>Sql</c> of a static field),
/// found by reflection, and the status changes read out of their text: for each <c>UPDATE tasks … SET status = …</c>,
/// the states it sets and the states its guard allows (the UPDATE's WHERE, or the WHERE of the CTE it updates from).
/// </summary>
internal static partial class QueueSql
{
    /// <summary>One status change of a statement: from which states (its guard) to which (what it sets).</summary>
    public sealed record StatusChange(string Statement, string[] From, string[] To, string Text);

    /// <summary>Every SQL text of the queue assembly, named <c>Type.Member</c>.</summary>
    public static IReadOnlyDictionary<string, string> Statements()
    {
        var found = new SortedDictionary<string, string>(StringComparer.Ordinal);
        foreach (var type in typeof(TaskLifecycle).Assembly.GetTypes().Where(t => !t.ContainsGenericParameters))
        {
            foreach (var field in type.GetFields(BindingFlags.Static | BindingFlags.Public | BindingFlags.NonPublic | BindingFlags.DeclaredOnly))
            {
                var sqlProperty = field.FieldType.GetProperty("Sql", BindingFlags.Instance | BindingFlags.Public | BindingFlags.NonPublic);
                if (field.FieldType != typeof(string) && sqlProperty?.PropertyType != typeof(string))
                {
                    continue;
                }
                var value = field.GetValue(null);
                var text = value as string ?? (value is null ? null : sqlProperty!.GetValue(value) as string);
                if (text is not null && IsSql().IsMatch(text))
                {
                    found[$"{type.Name}.{field.Name}"] = text;
                }
            }
        }
        return found;
    }

    /// <summary>The status changes of one statement (none when it changes no status).</summary>
    public static IEnumerable<StatusChange> StatusChanges(string name, string sql)
    {
        sql = LineComment().Replace(sql, ""); // a comment's apostrophe is no quote
        foreach (Match update in UpdateTasks().Matches(sql))
        {
            var segment = Enclosing(sql, update.Index);
            var top = TopLevel(segment);
            var set = Keyword(top, "SET", 0) ?? throw new InvalidOperationException($"{name}: UPDATE tasks without SET");
            var setEnd = new[] { Keyword(top, "FROM", set), Keyword(top, "WHERE", set), Keyword(top, "RETURNING", set) }
                .Where(i => i is not null).Select(i => i!.Value).DefaultIfEmpty(segment.Length).Min();
            var assignments = SplitTopLevel(segment[(set + 3)..setEnd], top[(set + 3)..setEnd]);
            var status = assignments.Select(a => StatusAssignment().Match(a)).FirstOrDefault(m => m.Success);
            if (status is null)
            {
                continue; // changes other columns only
            }
            var expression = status.Groups[1].Value.Trim();
            var where = Keyword(top, "WHERE", setEnd) is { } w ? segment[w..(Keyword(top, "RETURNING", w) ?? segment.Length)] : "";
            var to = States(expression).ToList();
            if (to.Count == 0)
            {
                // A computed state (a parameter or an input column): its guard in the WHERE names the states it may be.
                to = Guards(where).Where(g => g.Column == expression).SelectMany(g => g.States).ToList();
            }
            var from = Guards(where).Where(g => g.Column != expression).SelectMany(g => g.States).ToList();
            if (from.Count == 0 && Keyword(top, "FROM", set) is { } f && FromSource().Match(segment[(f + 4)..]) is { Success: true } source
                && CteBody(sql, source.Groups[1].Value) is { } body)
            {
                // UPDATE … FROM a CTE that chose (and locked) the rows: the guard is that CTE's.
                from = Guards(body).SelectMany(g => g.States).ToList();
            }
            yield return new StatusChange(name, from.Distinct().ToArray(), to.Distinct().ToArray(), segment);
        }
    }

    /// <summary>Every state literal compared with a status column anywhere in <paramref name="sql"/>.</summary>
    public static IEnumerable<string> StatusLiterals(string sql) =>
        StatusComparison().Matches(sql).SelectMany(m => Literal().Matches(m.Groups[1].Value).Select(l => l.Groups[1].Value));

    private static IEnumerable<string> States(string expression) =>
        Literal().Matches(expression).Select(m => m.Groups[1].Value).Where(s => TaskState.All.Contains(s));

    private static IEnumerable<(string Column, string[] States)> Guards(string where) =>
        Guard().Matches(where).Select(m => (m.Groups[1].Value, Literal().Matches(m.Groups[2].Value).Select(l => l.Groups[1].Value).ToArray()));

    /// <summary>The text from <paramref name="start"/> to the end of the parenthesis it is in (a CTE), or of the whole text.</summary>
    private static string Enclosing(string sql, int start)
    {
        var top = TopLevel(sql[start..], stopAtClose: true);
        return sql.Substring(start, top.Length);
    }

    private static string? CteBody(string sql, string name)
    {
        var m = Regex.Match(sql, $@"\b{Regex.Escape(name)}\s+AS\s*\(", RegexOptions.IgnoreCase);
        return m.Success ? Enclosing(sql, m.Index + m.Length) : null;
    }

    /// <summary>
    /// The text with everything inside quotes or nested parentheses blanked (same length), so keywords and commas found
    /// in it are top-level; with <paramref name="stopAtClose"/>, cut at the parenthesis that closes the start's level.
    /// </summary>
    private static string TopLevel(string text, bool stopAtClose = false)
    {
        var masked = new char[text.Length];
        var depth = 0;
        var quoted = false;
        for (var i = 0; i < text.Length; i++)
        {
            var c = text[i];
            if (quoted)
            {
                quoted = c != '\'';
                masked[i] = ' ';
                continue;
            }
            if (c == '\'')
            {
                quoted = true;
                masked[i] = ' ';
                continue;
            }
            if (c == ')' && --depth < 0 && stopAtClose)
            {
                return new string(masked, 0, i);
            }
            masked[i] = depth > 0 || c == '(' ? ' ' : c;
            if (c == '(')
            {
                depth++;
            }
        }
        return new string(masked);
    }

    private static int? Keyword(string top, string keyword, int after)
    {
        var m = new Regex($@"\b{keyword}\b", RegexOptions.IgnoreCase).Match(top, after);
        return m.Success ? m.Index : null;
    }

    private static List<string> SplitTopLevel(string text, string top)
    {
        var parts = new List<string>();
        var start = 0;
        for (var i = 0; i < top.Length; i++)
        {
            if (top[i] == ',')
            {
                parts.Add(text[start..i]);
                start = i + 1;
            }
        }
        parts.Add(text[start..]);
        return parts;
    }

    [GeneratedRegex(@"\b(UPDATE|INSERT|SELECT)\b", RegexOptions.IgnoreCase)]
    private static partial Regex IsSql();

    [GeneratedRegex(@"\bUPDATE\s+tasks\b", RegexOptions.IgnoreCase)]
    private static partial Regex UpdateTasks();

    [GeneratedRegex(@"^\s*status\s*=\s*(.+)$", RegexOptions.IgnoreCase | RegexOptions.Singleline)]
    private static partial Regex StatusAssignment();

    [GeneratedRegex(@"^\s*(\w+)")]
    private static partial Regex FromSource();

    // t.status IN ('a','b') / i.old_status = 'a' / @status IN (…) (a computed state's guard): not a longer name (from_status).
    [GeneratedRegex(@"(?<![\w.@])(@?(?:\w+\.)?(?:old_)?status)\s*(?:=|IN)\s*(\('[^)]*\)|'\w+')", RegexOptions.IgnoreCase)]
    private static partial Regex Guard();

    [GeneratedRegex(@"status\s*(?:=|<>|!=|NOT\s+IN|IN)\s*(\([^)]*\)|'\w+')", RegexOptions.IgnoreCase)]
    private static partial Regex StatusComparison();

    [GeneratedRegex(@"'(\w+)'")]
    private static partial Regex Literal();

    [GeneratedRegex(@"--[^\n]*")]
    private static partial Regex LineComment();
}
