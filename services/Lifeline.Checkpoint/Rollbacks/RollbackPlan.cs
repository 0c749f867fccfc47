using System.Globalization;
using Lifeline.Checkpoint.Checkpoints;
using Lifeline.Checkpoint.Storage;
using Lifeline.Checkpoint.V1;

namespace Lifeline.Checkpoint.Rollbacks;

/// <summary>An item a rollback restores: versions before and after (empty when absent).</summary>
public sealed record RestoredItem(string Kind, string Key, string PreviousVersion, string RestoredVersion);

/// <summary>
/// What a rollback produces: the new state — scoped parts from the target, the rest from the current
/// head — and the items that differ. Pure: no store, so a dry run and a real run plan identically.
/// </summary>
public sealed class RollbackPlan
{
    private RollbackPlan(StateParts result, List<RestoredItem> items)
    {
        Result = result;
        Items = items;
    }

    public StateParts Result { get; }
    public List<RestoredItem> Items { get; }

    /// <summary>What a scope selects, after validation (FULL selects everything).</summary>
    public sealed record Selection(bool Workflow, bool AllArtifacts, string[] Artifacts, bool AllContext, string[] Context, bool AllAgents, string[] Agents, bool Bus)
    {
        public static Selection Everything { get; } = new(true, true, [], true, [], true, [], true);
    }

    public static RollbackPlan Build(StateParts current, StateParts target, Selection scope)
    {
        var result = new StateParts
        {
            Workflow = current.Workflow.Clone(),
            Artifacts = current.Artifacts.Select(a => a.Clone()).ToList(),
            Context = new SortedDictionary<string, string>(current.Context, StringComparer.Ordinal),
            Agents = new SortedDictionary<string, string>(current.Agents, StringComparer.Ordinal),
            Bus = current.Bus.Clone(),
        };
        var items = new List<RestoredItem>();

        if (scope.Workflow && current.WorkflowJson() != target.WorkflowJson())
        {
            result.Workflow.CurrentPhase = target.Workflow.CurrentPhase;
            result.Workflow.Status = target.Workflow.Status;
            result.Workflow.CompletedPhases.Clear();
            result.Workflow.CompletedPhases.AddRange(target.Workflow.CompletedPhases);
            items.Add(new RestoredItem(StateParts.WorkflowKind, "", ShortVersion(current.WorkflowJson()), ShortVersion(target.WorkflowJson())));
        }

        var artifactIds = scope.AllArtifacts
            ? current.Artifacts.Select(a => a.Id).Union(target.Artifacts.Select(a => a.Id)).ToArray()
            : scope.Artifacts;
        foreach (var id in artifactIds)
        {
            var before = current.Artifact(id);
            var after = target.Artifact(id);
            if (before is not null && after is not null && CanonicalState.CanonicalJson(before) == CanonicalState.CanonicalJson(after))
            {
                continue;
            }
            if (before is null && after is null)
            {
                continue;
            }
            items.Add(new RestoredItem(StateParts.ArtifactKind, id,
                before?.Version.ToString(CultureInfo.InvariantCulture) ?? "", after?.Version.ToString(CultureInfo.InvariantCulture) ?? ""));
        }
        if (scope.AllArtifacts)
        {
            result.Artifacts.Clear();
            result.Artifacts.AddRange(target.Artifacts.Select(a => a.Clone()));
        }
        else
        {
            foreach (var id in scope.Artifacts)
            {
                var index = result.Artifacts.FindIndex(a => a.Id == id);
                var restored = target.Artifact(id)?.Clone();
                if (restored is null)
                {
                    if (index >= 0)
                    {
                        result.Artifacts.RemoveAt(index);
                    }
                }
                else if (index >= 0)
                {
                    result.Artifacts[index] = restored;
                }
                else
                {
                    result.Artifacts.Add(restored);
                }
            }
        }

        RestoreKeyed(StateParts.ContextKind, current.Context, target.Context, result.Context, scope.AllContext, scope.Context, items);
        RestoreKeyed(StateParts.AgentKind, current.Agents, target.Agents, result.Agents, scope.AllAgents, scope.Agents, items);

        if (scope.Bus && current.BusJson() != target.BusJson())
        {
            result.Bus.LastProcessedId = target.Bus.LastProcessedId;
            result.Bus.PendingMessages.Clear();
            result.Bus.PendingMessages.AddRange(target.Bus.PendingMessages);
            items.Add(new RestoredItem(StateParts.BusKind, "", ShortVersion(current.BusJson()), ShortVersion(target.BusJson())));
        }
        return new RollbackPlan(result, items);
    }

    private static void RestoreKeyed(string kind, SortedDictionary<string, string> current, SortedDictionary<string, string> target,
        SortedDictionary<string, string> result, bool all, string[] keys, List<RestoredItem> items)
    {
        var selected = all ? current.Keys.Union(target.Keys).ToArray() : keys;
        foreach (var key in selected)
        {
            var had = current.TryGetValue(key, out var before);
            var has = target.TryGetValue(key, out var after);
            if (had == has && before == after)
            {
                continue;
            }
            items.Add(new RestoredItem(kind, key, had ? ShortVersion(before!) : "", has ? ShortVersion(after!) : ""));
            if (has)
            {
                result[key] = after!;
            }
            else
            {
                result.Remove(key);
            }
        }
    }

    /// <summary>
    /// Checks a written state independently of how it was built: every selected item equals the
    /// target's, every other item equals the current state's. Returns the problems found.
    /// </summary>
    public static List<string> Verify(StateParts written, StateParts current, StateParts target, Selection scope)
    {
        var problems = new List<string>();
        void Check(bool selected, string what, string? actual, string? fromTarget, string? fromCurrent)
        {
            var expected = selected ? fromTarget : fromCurrent;
            if (actual != expected)
            {
                problems.Add($"{what} does not equal the {(selected ? "target" : "current state")}");
            }
        }
        Check(scope.Workflow, "workflow", written.WorkflowJson(), target.WorkflowJson(), current.WorkflowJson());
        Check(scope.Bus, "message_bus_state", written.BusJson(), target.BusJson(), current.BusJson());
        static string? Artifact(StateParts parts, string id) => parts.Artifact(id) is { } a ? CanonicalState.CanonicalJson(a) : null;
        foreach (var id in written.Artifacts.Select(a => a.Id).Union(current.Artifacts.Select(a => a.Id)).Union(target.Artifacts.Select(a => a.Id)))
        {
            Check(scope.AllArtifacts || scope.Artifacts.Contains(id), $"artifact '{id}'", Artifact(written, id), Artifact(target, id), Artifact(current, id));
        }
        static string? Get(SortedDictionary<string, string> map, string key) => map.TryGetValue(key, out var v) ? v : null;
        foreach (var key in written.Context.Keys.Union(current.Context.Keys).Union(target.Context.Keys))
        {
            Check(scope.AllContext || scope.Context.Contains(key), $"context key '{key}'", Get(written.Context, key), Get(target.Context, key), Get(current.Context, key));
        }
        foreach (var key in written.Agents.Keys.Union(current.Agents.Keys).Union(target.Agents.Keys))
        {
            Check(scope.AllAgents || scope.Agents.Contains(key), $"agent state '{key}'", Get(written.Agents, key), Get(target.Agents, key), Get(current.Agents, key));
        }
        return problems;
    }

    private static string ShortVersion(string canonicalJson) => CanonicalState.ShortVersion(canonicalJson);
}
