using System.Security.Cryptography;
using System.Text.Encodings.Web;
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
    private static readonly JsonWriterOptions WriterOptions = new()
    {
        Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
        Indented = false,
        SkipValidation = false,
    };

    private static readonly JsonDocumentOptions ReadOptions = new() { AllowDuplicateProperties = false, MaxDepth = 128 };

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
        var buffer = new System.Buffers.ArrayBufferWriter<byte>(4096);
        using (var w = new Utf8JsonWriter(buffer, WriterOptions))
        {
            w.WriteStartObject();

            w.WritePropertyName("agent_states");
            w.WriteStartObject();
            foreach (var (agent, json) in state.AgentStates.OrderBy(p => p.Key, StringComparer.Ordinal))
            {
                w.WritePropertyName(agent);
                WriteJsonText(w, json);
            }
            w.WriteEndObject();

            w.WritePropertyName("artifacts");
            w.WriteStartArray();
            foreach (var a in state.Artifacts)
            {
                WriteArtifact(w, a);
            }
            w.WriteEndArray();

            w.WritePropertyName("context");
            WriteJsonText(w, state.Context);

            var bus = state.MessageBusState ?? new MessageBusState();
            w.WritePropertyName("message_bus_state");
            w.WriteStartObject();
            w.WriteString("last_processed_id", bus.LastProcessedId);
            w.WritePropertyName("pending_messages");
            w.WriteStartArray();
            foreach (var m in bus.PendingMessages)
            {
                w.WriteStringValue(m);
            }
            w.WriteEndArray();
            w.WriteEndObject();

            var wf = state.Workflow ?? new WorkflowState();
            w.WritePropertyName("workflow");
            w.WriteStartObject();
            w.WritePropertyName("completed_phases");
            w.WriteStartArray();
            foreach (var p in wf.CompletedPhases)
            {
                w.WriteNumberValue(p);
            }
            w.WriteEndArray();
            w.WriteNumber("current_phase", wf.CurrentPhase);
            w.WriteString("status", wf.Status);
            w.WriteEndObject();

            w.WriteEndObject();
        }
        return buffer.WrittenSpan.ToArray();
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
        var buffer = new System.Buffers.ArrayBufferWriter<byte>(256);
        using (var w = new Utf8JsonWriter(buffer, WriterOptions))
        {
            WriteJsonText(w, jsonText);
        }
        return System.Text.Encoding.UTF8.GetString(buffer.WrittenSpan);
    }

    /// <summary>Canonical JSON of one element.</summary>
    public static string CanonicalJson(JsonElement element)
    {
        var buffer = new System.Buffers.ArrayBufferWriter<byte>(256);
        using (var w = new Utf8JsonWriter(buffer, WriterOptions))
        {
            WriteCanonical(w, element);
        }
        return System.Text.Encoding.UTF8.GetString(buffer.WrittenSpan);
    }

    /// <summary>Canonical JSON of one artifact reference.</summary>
    public static string CanonicalJson(ArtifactRef artifact)
    {
        var buffer = new System.Buffers.ArrayBufferWriter<byte>(256);
        using (var w = new Utf8JsonWriter(buffer, WriterOptions))
        {
            WriteArtifact(w, artifact);
        }
        return System.Text.Encoding.UTF8.GetString(buffer.WrittenSpan);
    }

    /// <summary>First 12 hex digits of the SHA-256 of a canonical JSON value: a short version of a state item.</summary>
    public static string ShortVersion(string canonicalJson) =>
        Convert.ToHexStringLower(SHA256.HashData(System.Text.Encoding.UTF8.GetBytes(canonicalJson)))[..12];

    private static void WriteJsonText(Utf8JsonWriter w, string jsonText)
    {
        using var document = JsonDocument.Parse(jsonText.Length == 0 ? "{}" : jsonText, ReadOptions);
        WriteCanonical(w, document.RootElement);
    }

    private static void WriteCanonical(Utf8JsonWriter w, JsonElement element)
    {
        switch (element.ValueKind)
        {
            case JsonValueKind.Object:
                w.WriteStartObject();
                foreach (var property in element.EnumerateObject().OrderBy(p => p.Name, StringComparer.Ordinal))
                {
                    w.WritePropertyName(property.Name);
                    WriteCanonical(w, property.Value);
                }
                w.WriteEndObject();
                break;
            case JsonValueKind.Array:
                w.WriteStartArray();
                foreach (var item in element.EnumerateArray())
                {
                    WriteCanonical(w, item);
                }
                w.WriteEndArray();
                break;
            case JsonValueKind.String:
                w.WriteStringValue(element.GetString());
                break;
            case JsonValueKind.Number:
                // Numbers exactly as written: no float round trip may change a checksum or a value.
                w.WriteRawValue(element.GetRawText(), skipInputValidation: true);
                break;
            case JsonValueKind.True:
                w.WriteBooleanValue(true);
                break;
            case JsonValueKind.False:
                w.WriteBooleanValue(false);
                break;
            default:
                w.WriteNullValue();
                break;
        }
    }

    private static void WriteArtifact(Utf8JsonWriter w, ArtifactRef a)
    {
        w.WriteStartObject();
        w.WriteString("checksum", a.Checksum);
        w.WriteString("id", a.Id);
        w.WriteString("name", a.Name);
        w.WriteString("ref", a.Ref);
        w.WriteNumber("size", a.Size);
        w.WriteString("type", a.Type);
        w.WriteNumber("version", a.Version);
        w.WriteEndObject();
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
