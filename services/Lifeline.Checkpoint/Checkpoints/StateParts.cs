using System.Text.Encodings.Web;
using System.Text.Json;
using Lifeline.Checkpoint.Storage;
using Lifeline.Checkpoint.V1;

namespace Lifeline.Checkpoint.Checkpoints;

/// <summary>
/// A state taken apart into comparable items — canonical JSON per item — so diffs and rollbacks
/// work item by item: workflow, artifacts by id, context by top-level key, agent states by name,
/// and the message bus position.
/// </summary>
public sealed class StateParts
{
    public const string WorkflowKind = "workflow";
    public const string ArtifactKind = "artifact";
    public const string ContextKind = "context";
    public const string AgentKind = "agent_state";
    public const string BusKind = "message_bus_state";

    public required WorkflowState Workflow { get; init; }
    public required List<ArtifactRef> Artifacts { get; init; }
    /// <summary>Top-level context keys → canonical JSON of their values, in key order.</summary>
    public required SortedDictionary<string, string> Context { get; init; }
    /// <summary>Agent → canonical JSON of its state.</summary>
    public required SortedDictionary<string, string> Agents { get; init; }
    public required MessageBusState Bus { get; init; }

    public static StateParts From(CheckpointState state)
    {
        var context = new SortedDictionary<string, string>(StringComparer.Ordinal);
        using (var document = JsonDocument.Parse(state.Context.Length == 0 ? "{}" : state.Context))
        {
            foreach (var property in document.RootElement.EnumerateObject())
            {
                context[property.Name] = CanonicalState.CanonicalJson(property.Value);
            }
        }
        var agents = new SortedDictionary<string, string>(StringComparer.Ordinal);
        foreach (var (agent, json) in state.AgentStates)
        {
            agents[agent] = CanonicalState.CanonicalJson(json);
        }
        return new StateParts
        {
            Workflow = state.Workflow?.Clone() ?? new WorkflowState(),
            Artifacts = state.Artifacts.Select(a => a.Clone()).ToList(),
            Context = context,
            Agents = agents,
            Bus = state.MessageBusState?.Clone() ?? new MessageBusState(),
        };
    }

    public CheckpointState ToState()
    {
        var state = new CheckpointState
        {
            Workflow = Workflow.Clone(),
            Context = JoinObject(Context),
            MessageBusState = Bus.Clone(),
        };
        state.Artifacts.AddRange(Artifacts.Select(a => a.Clone()));
        foreach (var (agent, json) in Agents)
        {
            state.AgentStates[agent] = json;
        }
        return state;
    }

    public string WorkflowJson() => JsonSerializer.Serialize(new
    {
        completed_phases = Workflow.CompletedPhases.ToArray(),
        current_phase = Workflow.CurrentPhase,
        status = Workflow.Status,
    });

    public string BusJson() => JsonSerializer.Serialize(new
    {
        last_processed_id = Bus.LastProcessedId,
        pending_messages = Bus.PendingMessages.ToArray(),
    }, new JsonSerializerOptions { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping });

    public ArtifactRef? Artifact(string id) => Artifacts.FirstOrDefault(a => a.Id == id);

    private static string JoinObject(SortedDictionary<string, string> members)
    {
        var buffer = new System.Buffers.ArrayBufferWriter<byte>(1024);
        using (var w = new Utf8JsonWriter(buffer, new JsonWriterOptions { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping }))
        {
            w.WriteStartObject();
            foreach (var (key, json) in members)
            {
                w.WritePropertyName(key);
                w.WriteRawValue(json, skipInputValidation: true);
            }
            w.WriteEndObject();
        }
        return System.Text.Encoding.UTF8.GetString(buffer.WrittenSpan);
    }
}

/// <summary>One difference between two states.</summary>
public sealed record StateDifference(string Path, ChangeKind Kind, string Before, string After);

/// <summary>Compares two states item by item.</summary>
public static class StateDiff
{
    public static List<StateDifference> Compare(CheckpointState from, CheckpointState to)
    {
        var a = StateParts.From(from);
        var b = StateParts.From(to);
        var changes = new List<StateDifference>();
        void Value(string path, string before, string after)
        {
            if (before != after)
            {
                changes.Add(new StateDifference(path, ChangeKind.Changed, before, after));
            }
        }
        Value("workflow.current_phase", a.Workflow.CurrentPhase.ToString(System.Globalization.CultureInfo.InvariantCulture),
            b.Workflow.CurrentPhase.ToString(System.Globalization.CultureInfo.InvariantCulture));
        Value("workflow.completed_phases", JsonSerializer.Serialize(a.Workflow.CompletedPhases.ToArray()), JsonSerializer.Serialize(b.Workflow.CompletedPhases.ToArray()));
        Value("workflow.status", JsonSerializer.Serialize(a.Workflow.Status), JsonSerializer.Serialize(b.Workflow.Status));

        Keyed(changes, "artifacts[{0}]",
            a.Artifacts.ToDictionary(x => x.Id, CanonicalState.CanonicalJson), b.Artifacts.ToDictionary(x => x.Id, CanonicalState.CanonicalJson));
        Keyed(changes, "context.{0}", a.Context, b.Context);
        Keyed(changes, "agent_states.{0}", a.Agents, b.Agents);

        Value("message_bus_state.pending_messages", JsonSerializer.Serialize(a.Bus.PendingMessages.ToArray()), JsonSerializer.Serialize(b.Bus.PendingMessages.ToArray()));
        Value("message_bus_state.last_processed_id", JsonSerializer.Serialize(a.Bus.LastProcessedId), JsonSerializer.Serialize(b.Bus.LastProcessedId));
        return changes;
    }

    private static void Keyed(List<StateDifference> changes, string pathFormat, IDictionary<string, string> before, IDictionary<string, string> after)
    {
        foreach (var key in before.Keys.Union(after.Keys).Order(StringComparer.Ordinal))
        {
            var path = string.Format(System.Globalization.CultureInfo.InvariantCulture, pathFormat, key);
            var had = before.TryGetValue(key, out var old);
            var has = after.TryGetValue(key, out var now);
            if (had && !has)
            {
                changes.Add(new StateDifference(path, ChangeKind.Removed, old!, ""));
            }
            else if (!had && has)
            {
                changes.Add(new StateDifference(path, ChangeKind.Added, "", now!));
            }
            else if (old != now)
            {
                changes.Add(new StateDifference(path, ChangeKind.Changed, old!, now!));
            }
        }
    }
}
