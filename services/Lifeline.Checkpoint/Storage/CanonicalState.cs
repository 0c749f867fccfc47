using System.Security.Cryptography;
using System.Text.Json;
using Lifeline.Checkpoint.V1;

namespace Lifeline.Checkpoint.Storage;

/// <summary>
/// The canonical form of a state: the bytes its checksum covers and the bytes stored (compressed,
/// as a full snapshot or a delta). UTF-8 JSON, no insignificant whitespace, object keys sorted
/// ordinally, context and agent states embedded as the JSON they parse to with numbers as written.
/// Two states with the same content have the same bytes, whatever the JSON formatting they came in.
/// </summary>
public static class CanonicalState
{
    /// <summary>How deep a state's JSON parts may nest.</summary>
    public const int MaxDepth = 128;

    private static readonly JsonDocumentOptions ReadOptions = new() { AllowDuplicateProperties = false, MaxDepth = MaxDepth };

    /// <summary>Parses a JSON object given as text (context, an agent state); null with a reason when it is not one.</summary>
    public static JsonDocument? ParseObject(string text, out string? problem)
    {
        problem = null;
        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(text.Length == 0 ? "{}" : text, ReadOptions);
        }
        catch (JsonException e)
        {
            problem = "is not valid JSON: " + e.Message;
            return null;
        }
        if (document.RootElement.ValueKind != JsonValueKind.Object)
        {
            problem = $"must be a JSON object, not {document.RootElement.ValueKind.ToString().ToLowerInvariant()}";
            document.Dispose();
            return null;
        }
        return document;
    }

    /// <summary>The canonical bytes of a state whose JSON parts were validated (throws <see cref="JsonException"/> otherwise).</summary>
    public static byte[] Serialize(CheckpointState state)
    {
        var w = new CanonicalJsonWriter();
        w.Raw("{\"agent_states\":{"u8);
        var first = true;
        foreach (var (agent, json) in state.AgentStates.OrderBy(p => p.Key, CodePointComparer.Instance))
        {
            if (!first)
            {
                w.Raw(',');
            }
            first = false;
            w.String(agent);
            w.Raw(':');
            WriteJsonText(w, json);
        }
        w.Raw("},\"artifacts\":["u8);
        for (var i = 0; i < state.Artifacts.Count; i++)
        {
            if (i > 0)
            {
                w.Raw(',');
            }
            WriteArtifact(w, state.Artifacts[i]);
        }
        w.Raw("],\"context\":"u8);
        WriteJsonText(w, state.Context);

        var bus = state.MessageBusState ?? new MessageBusState();
        w.Raw(",\"message_bus_state\":{\"last_processed_id\":"u8);
        w.String(bus.LastProcessedId);
        w.Raw(",\"pending_messages\":["u8);
        for (var i = 0; i < bus.PendingMessages.Count; i++)
        {
            if (i > 0)
            {
                w.Raw(',');
            }
            w.String(bus.PendingMessages[i]);
        }
        var wf = state.Workflow ?? new WorkflowState();
        w.Raw("]},\"workflow\":{\"completed_phases\":["u8);
        for (var i = 0; i < wf.CompletedPhases.Count; i++)
        {
            if (i > 0)
            {
                w.Raw(',');
            }
            w.Number(wf.CompletedPhases[i]);
        }
        w.Raw("],\"current_phase\":"u8);
        w.Number(wf.CurrentPhase);
        w.Raw(",\"status\":"u8);
        w.String(wf.Status);
        w.Raw("}}"u8);
        return w.ToArray();
    }

    /// <summary>Reads canonical bytes back into a state (context and agent states as canonical JSON text).</summary>
    public static CheckpointState Deserialize(ReadOnlySpan<byte> canonical)
    {
        var reader = new Utf8JsonReader(canonical);
        using var document = JsonDocument.ParseValue(ref reader);
        var root = document.RootElement;
        var state = new CheckpointState
        {
            Context = root.GetProperty("context").GetRawText(),
            Workflow = new WorkflowState(),
            MessageBusState = new MessageBusState(),
        };
        foreach (var agent in root.GetProperty("agent_states").EnumerateObject())
        {
            state.AgentStates[agent.Name] = agent.Value.GetRawText();
        }
        foreach (var a in root.GetProperty("artifacts").EnumerateArray())
        {
            state.Artifacts.Add(ReadArtifact(a));
        }
        var bus = root.GetProperty("message_bus_state");
        state.MessageBusState.LastProcessedId = bus.GetProperty("last_processed_id").GetString() ?? "";
        foreach (var m in bus.GetProperty("pending_messages").EnumerateArray())
        {
            state.MessageBusState.PendingMessages.Add(m.GetString() ?? "");
        }
        var wf = root.GetProperty("workflow");
        state.Workflow.CurrentPhase = wf.GetProperty("current_phase").GetInt32();
        state.Workflow.Status = wf.GetProperty("status").GetString() ?? "";
        foreach (var p in wf.GetProperty("completed_phases").EnumerateArray())
        {
            state.Workflow.CompletedPhases.Add(p.GetInt32());
        }
        return state;
    }

    /// <summary>Lowercase hex SHA-256 of canonical bytes.</summary>
    public static string Checksum(ReadOnlySpan<byte> canonical) => Convert.ToHexStringLower(SHA256.HashData(canonical));

    /// <summary>Canonical JSON of a JSON value given as text (for diffs and item versions).</summary>
    public static string CanonicalJson(string jsonText)
    {
        var w = new CanonicalJsonWriter(256);
        WriteJsonText(w, jsonText);
        return System.Text.Encoding.UTF8.GetString(w.Written);
    }

    /// <summary>Canonical JSON of one element.</summary>
    public static string CanonicalJson(JsonElement element)
    {
        var w = new CanonicalJsonWriter(256);
        w.Value(element);
        return System.Text.Encoding.UTF8.GetString(w.Written);
    }

    /// <summary>Canonical JSON of one artifact reference.</summary>
    public static string CanonicalJson(ArtifactRef artifact)
    {
        var w = new CanonicalJsonWriter(256);
        WriteArtifact(w, artifact);
        return System.Text.Encoding.UTF8.GetString(w.Written);
    }

    /// <summary>First 12 hex digits of the SHA-256 of a canonical JSON value: a short version of a state item.</summary>
    public static string ShortVersion(string canonicalJson) =>
        Convert.ToHexStringLower(SHA256.HashData(System.Text.Encoding.UTF8.GetBytes(canonicalJson)))[..12];

    private static void WriteJsonText(CanonicalJsonWriter w, string jsonText)
    {
        using var document = JsonDocument.Parse(jsonText.Length == 0 ? "{}" : jsonText, ReadOptions);
        w.Value(document.RootElement);
    }

    private static void WriteArtifact(CanonicalJsonWriter w, ArtifactRef a)
    {
        w.Raw("{\"checksum\":"u8);
        w.String(a.Checksum);
        w.Raw(",\"id\":"u8);
        w.String(a.Id);
        w.Raw(",\"name\":"u8);
        w.String(a.Name);
        w.Raw(",\"ref\":"u8);
        w.String(a.Ref);
        w.Raw(",\"size\":"u8);
        w.Number(a.Size);
        w.Raw(",\"type\":"u8);
        w.String(a.Type);
        w.Raw(",\"version\":"u8);
        w.Number(a.Version);
        w.Raw('}');
    }

    private static ArtifactRef ReadArtifact(JsonElement a) => new()
    {
        Checksum = a.GetProperty("checksum").GetString() ?? "",
        Id = a.GetProperty("id").GetString() ?? "",
        Name = a.GetProperty("name").GetString() ?? "",
        Ref = a.GetProperty("ref").GetString() ?? "",
        Size = a.GetProperty("size").GetInt64(),
        Type = a.GetProperty("type").GetString() ?? "",
        Version = a.GetProperty("version").GetInt32(),
    };
}
