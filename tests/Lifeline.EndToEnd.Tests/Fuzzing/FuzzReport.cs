using System.Globalization;
using System.Text;

namespace Lifeline.EndToEnd.Tests.Fuzzing;

/// <summary>
/// The failures of a run, grouped so that one line is one defect to fix: per RPC, transport, case family, failure and
/// status, with the count, the fields it happened on and the commonest message. Above that, the same per family across
/// RPCs (for fixes that are one change in ServiceDefaults), and the outcome counts of the whole run.
/// </summary>
internal static class FuzzReport
{
    public static string Tally(IReadOnlyList<FuzzOutcome> outcomes)
    {
        var byTransport = outcomes.GroupBy(o => o.Case.Transport).OrderBy(g => g.Key)
            .Select(g => $"{g.Key.ToString().ToLowerInvariant()} {g.Count()} ({g.Count(o => o.Accepted)} accepted)");
        var statuses = outcomes.GroupBy(o => o.Status).OrderByDescending(g => g.Count()).Select(g => $"{g.Key} {g.Count()}");
        var slowest = outcomes.OrderByDescending(o => o.Elapsed).Take(3).Select(o => $"{o.Case} {o.Elapsed.TotalSeconds:0.0} s");
        return $"by transport: {string.Join(", ", byTransport)}\nby status: {string.Join(", ", statuses)}\nslowest: {string.Join("; ", slowest)}";
    }

    /// <summary>Per case family across RPCs: failure kind and status with counts, and how many RPCs.</summary>
    public static string ByFamily(IReadOnlyList<FuzzOutcome> failures)
    {
        var text = new StringBuilder();
        foreach (var family in failures.GroupBy(o => (o.Case.Transport, o.Case.Family)).OrderBy(g => g.Key.Transport).ThenBy(g => g.Key.Family, StringComparer.Ordinal))
        {
            var kinds = family.GroupBy(o => (o.Failure, o.Status)).OrderByDescending(g => g.Count())
                .Select(g => $"{g.Key.Failure}/{g.Key.Status} ×{g.Count()} on {g.Select(o => o.Case.RpcName).Distinct().Count()} RPCs");
            text.Append(CultureInfo.InvariantCulture, $"  {Transport(family.Key.Transport),-7} {family.Key.Family,-42} {string.Join("; ", kinds)}\n");
        }

        return text.ToString();
    }

    /// <summary>One line per (RPC, transport, family, failure, status), at most <paramref name="maxGroups"/> lines.</summary>
    public static string Groups(IReadOnlyList<FuzzOutcome> failures, int maxGroups, out int groupCount)
    {
        var groups = failures
            .GroupBy(o => (o.Case.RpcName, o.Case.Transport, o.Case.Family, o.Failure, o.Status))
            .OrderBy(g => g.Key.RpcName, StringComparer.Ordinal).ThenBy(g => g.Key.Transport).ThenBy(g => g.Key.Family, StringComparer.Ordinal)
            .ToList();
        groupCount = groups.Count;
        var text = new StringBuilder();
        foreach (var group in groups.Take(maxGroups))
        {
            var fields = group.Select(o => o.Case.Field).Distinct().ToList();
            var message = group.GroupBy(o => o.Message).OrderByDescending(g => g.Count()).First().Key;
            text.Append(CultureInfo.InvariantCulture,
                $"  {group.Key.RpcName,-48} {Transport(group.Key.Transport),-7} {group.Key.Family,-40} {group.Key.Failure}/{group.Key.Status} ×{group.Count()}  " +
                $"[{string.Join(", ", fields.Take(4))}{(fields.Count > 4 ? $", +{fields.Count - 4}" : "")}]  \"{Cut(message, 110)}\"\n");
        }

        if (groups.Count > maxGroups)
        {
            text.Append(CultureInfo.InvariantCulture, $"  … and {groups.Count - maxGroups} more groups (see the full report)\n");
        }

        return text.ToString();
    }

    /// <summary>Every case on its own line, for the report file: by RPC, or in the order they started.</summary>
    public static string Cases(IEnumerable<FuzzOutcome> outcomes, bool byTime = false)
    {
        var text = new StringBuilder();
        var ordered = byTime
            ? outcomes.OrderBy(o => o.Started)
            : outcomes.OrderBy(o => o.Case.RpcName, StringComparer.Ordinal).ThenBy(o => o.Case.Id);
        foreach (var o in ordered)
        {
            text.Append(CultureInfo.InvariantCulture, $"  +{o.Started.TotalSeconds:0.0}s {o.Case} → {o.Failure ?? "ok"}/{o.Status} in {o.Elapsed.TotalMilliseconds:0} ms: {o.Message}\n");
        }

        return text.ToString();
    }

    private static string Transport(FuzzTransport transport) => transport.ToString().ToLowerInvariant();

    private static string Cut(string text, int length) => text.Length <= length ? text : text[..length] + "…";
}
