using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using Lifeline.Checkpoint.V1;

namespace Lifeline.Checkpoint.Tests;

/// <summary>
/// The canonical form of a checkpoint state, written independently of the service from the rules in
/// checkpoint.proto: UTF-8 JSON without insignificant whitespace, object keys sorted by code point, of
/// {"agent_states","artifacts" (given order),"context","message_bus_state","workflow"}; the context
/// and each agent state embedded as the JSON they parse to (keys sorted, numbers as written).
/// </summary>
internal static class Canonical
{
    public static byte[] Bytes(CheckpointState state) => Encoding.UTF8.GetBytes(Text(state));

    public static string Checksum(CheckpointState state) => Sha256Hex(Bytes(state));

    public static long Size(CheckpointState state) => Bytes(state).LongLength;

    public static string Sha256Hex(byte[] bytes) => Convert.ToHexStringLower(SHA256.HashData(bytes));

    /// <summary>First 12 hex digits of the SHA-256 of a value's canonical JSON (a rolled-back item's version).</summary>
    public static string Version(string canonicalJson) => Sha256Hex(Encoding.UTF8.GetBytes(canonicalJson))[..12];

    public static string Text(CheckpointState state)
    {
        var sb = new StringBuilder();
        sb.Append("{\"agent_states\":{");
        var first = true;
        foreach (var (name, value) in state.AgentStates.OrderBy(p => p.Key, CodePointComparer.Instance))
        {
            sb.Append(first ? "" : ",");
            first = false;
            AppendString(sb, name);
            sb.Append(':').Append(Json(value));
        }

        sb.Append("},\"artifacts\":[");
        first = true;
        foreach (var a in state.Artifacts)
        {
            sb.Append(first ? "" : ",");
            first = false;
            sb.Append("{\"checksum\":");
            AppendString(sb, a.Checksum);
            sb.Append(",\"id\":");
            AppendString(sb, a.Id);
            sb.Append(",\"name\":");
            AppendString(sb, a.Name);
            sb.Append(",\"ref\":");
            AppendString(sb, a.Ref);
            sb.Append(",\"size\":").Append(a.Size.ToString(CultureInfo.InvariantCulture));
            sb.Append(",\"type\":");
            AppendString(sb, a.Type);
            sb.Append(",\"version\":").Append(a.Version.ToString(CultureInfo.InvariantCulture));
            sb.Append('}');
        }

        sb.Append("],\"context\":").Append(Json(state.Context.Length == 0 ? "{}" : state.Context));
        var bus = state.MessageBusState ?? new MessageBusState();
        sb.Append(",\"message_bus_state\":{\"last_processed_id\":");
        AppendString(sb, bus.LastProcessedId);
        sb.Append(",\"pending_messages\":[");
        for (var i = 0; i < bus.PendingMessages.Count; i++)
        {
            sb.Append(i == 0 ? "" : ",");
            AppendString(sb, bus.PendingMessages[i]);
        }

        var workflow = state.Workflow ?? new WorkflowState();
        sb.Append("]},\"workflow\":{\"completed_phases\":[");
        sb.Append(string.Join(',', workflow.CompletedPhases.Select(p => p.ToString(CultureInfo.InvariantCulture))));
        sb.Append("],\"current_phase\":").Append(workflow.CurrentPhase.ToString(CultureInfo.InvariantCulture));
        sb.Append(",\"status\":");
        AppendString(sb, workflow.Status);
        sb.Append("}}");
        return sb.ToString();
    }

    /// <summary>The canonical text of a JSON document (keys sorted, no whitespace, numbers as written).</summary>
    public static string Json(string json)
    {
        using var document = JsonDocument.Parse(json);
        var sb = new StringBuilder();
        Append(sb, document.RootElement);
        return sb.ToString();
    }

    private static void Append(StringBuilder sb, JsonElement element)
    {
        switch (element.ValueKind)
        {
            case JsonValueKind.Object:
                sb.Append('{');
                var first = true;
                foreach (var property in element.EnumerateObject().OrderBy(p => p.Name, CodePointComparer.Instance))
                {
                    sb.Append(first ? "" : ",");
                    first = false;
                    AppendString(sb, property.Name);
                    sb.Append(':');
                    Append(sb, property.Value);
                }
                sb.Append('}');
                break;
            case JsonValueKind.Array:
                sb.Append('[');
                var i = 0;
                foreach (var item in element.EnumerateArray())
                {
                    sb.Append(i++ == 0 ? "" : ",");
                    Append(sb, item);
                }
                sb.Append(']');
                break;
            case JsonValueKind.String:
                AppendString(sb, element.GetString()!);
                break;
            case JsonValueKind.Number:
                sb.Append(element.GetRawText());
                break;
            case JsonValueKind.True:
                sb.Append("true");
                break;
            case JsonValueKind.False:
                sb.Append("false");
                break;
            default:
                sb.Append("null");
                break;
        }
    }

    /// <summary>Minimal escaping: quote, backslash and control characters; everything else as UTF-8.</summary>
    private static void AppendString(StringBuilder sb, string value)
    {
        sb.Append('"');
        foreach (var c in value)
        {
            switch (c)
            {
                case '"': sb.Append("\\\""); break;
                case '\\': sb.Append("\\\\"); break;
                case '\n': sb.Append("\\n"); break;
                case '\r': sb.Append("\\r"); break;
                case '\t': sb.Append("\\t"); break;
                case '\b': sb.Append("\\b"); break;
                case '\f': sb.Append("\\f"); break;
                default:
                    if (c < 0x20)
                    {
                        sb.Append("\\u").Append(((int)c).ToString("x4", CultureInfo.InvariantCulture));
                    }
                    else
                    {
                        sb.Append(c);
                    }
                    break;
            }
        }
        sb.Append('"');
    }

    /// <summary>Orders strings by Unicode code point (not UTF-16 code unit).</summary>
    private sealed class CodePointComparer : IComparer<string>
    {
        public static readonly CodePointComparer Instance = new();

        public int Compare(string? x, string? y)
        {
            var a = (x ?? "").EnumerateRunes().GetEnumerator();
            var b = (y ?? "").EnumerateRunes().GetEnumerator();
            while (true)
            {
                var hasA = a.MoveNext();
                var hasB = b.MoveNext();
                if (!hasA || !hasB)
                {
                    return hasA.CompareTo(hasB);
                }
                var c = a.Current.Value.CompareTo(b.Current.Value);
                if (c != 0)
                {
                    return c;
                }
            }
        }
    }
}
