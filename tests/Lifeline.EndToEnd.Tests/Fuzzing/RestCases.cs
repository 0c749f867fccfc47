using System.Globalization;
using System.Text;
using System.Text.Json.Nodes;
using Google.Protobuf.Reflection;
using Lifeline.Gateway.Contracts;

namespace Lifeline.EndToEnd.Tests.Fuzzing;

/// <summary>
/// REST cases of one <c>google.api.http</c> binding: broken bodies (bad JSON, unknown and misspelled fields), per body
/// field wrong JSON types and malformed values, per path variable malformed segments, and per query parameter (routes
/// without a body) unknown names and wrong types.
/// </summary>
/// <remarks>Query parameters are generated for the request's top-level non-message fields only.</remarks>
internal static class RestCases
{
    private delegate JsonNode? JsonAttack(FieldDescriptor field, Baseline baseline, JsonText text);

    private sealed record ValueAttack(string Family, FuzzExpectation Expectation, bool Heavy, JsonAttack Value);

    /// <summary>The route's plain request: every field its baseline value (path variables, query or body).</summary>
    public static RestRequest BaselineRequest(RpcMethod rpc, HttpRoute route, Baseline baseline)
    {
        var shape = new RouteShape(rpc.Descriptor.InputType, route, route.PathFields.ToHashSet(StringComparer.Ordinal));
        return new RestRequest(route.HttpMethod, shape.Url(baseline), shape.BaselineBody(baseline));
    }

    public static IEnumerable<FuzzCase> For(RpcMethod rpc, HttpRoute route)
    {
        var request = rpc.Descriptor.InputType;
        var routeName = $"{route.HttpMethod} {route.Template}";
        var pathFields = route.PathFields.ToHashSet(StringComparer.Ordinal);
        var shape = new RouteShape(request, route, pathFields);

        FuzzCase Case(string family, string field, FuzzExpectation expectation, bool heavy, Func<Baseline, RestRequest> build) =>
            new(0, rpc, FuzzTransport.Rest, family, field, expectation, heavy, routeName, build);

        foreach (var pathField in pathFields)
        {
            foreach (var (family, segment) in PathSegments)
            {
                yield return Case(family, pathField, FuzzExpectation.CleanAnswer, false,
                    b => new RestRequest(route.HttpMethod, shape.Url(b, pathField, segment), shape.BaselineBody(b)));
            }
        }

        if (route.Body is null)
        {
            foreach (var c in QueryCases(shape, Case))
            {
                yield return c;
            }

            yield break;
        }

        foreach (var (family, expectation, body) in BodyAttacks)
        {
            yield return Case(family, "-", expectation, false, b => new RestRequest(route.HttpMethod, shape.Url(b), body(shape, b)));
        }

        yield return Case("rest.unknown-field", "noSuchField", FuzzExpectation.Refusal, false, b =>
        {
            var json = shape.BodyJson(b);
            json["noSuchField"] = 1;
            return new RestRequest(route.HttpMethod, shape.Url(b), Encoding.UTF8.GetBytes(json.ToJsonString()));
        });
        yield return Case("rest.misspelled-field", "(first body field)", FuzzExpectation.Refusal, false, b =>
        {
            var json = shape.BodyJson(b);
            if (json.Count > 0)
            {
                var (name, value) = json.First();
                json.Remove(name);
                json[Misspell(name)] = value;
            }
            else
            {
                json["taskk"] = "x"; // an empty body message: any name is a misspelling
            }

            return new RestRequest(route.HttpMethod, shape.Url(b), Encoding.UTF8.GetBytes(json.ToJsonString()));
        });

        foreach (var path in shape.BodyPaths())
        {
            foreach (var attack in FieldAttacks(path))
            {
                yield return Case(attack.Family, path.Name, attack.Expectation, attack.Heavy, b =>
                {
                    var text = new JsonText();
                    var json = shape.BodyJson(b, path, f => attack.Value(f, b, text));
                    return new RestRequest(route.HttpMethod, shape.Url(b), text.Serialize(json));
                });
            }
        }
    }

    private static readonly (string Family, string Segment)[] PathSegments =
    [
        ("rest.path.nul", "%00"),
        ("rest.path.8KiB", new string('a', 8192)),
        ("rest.path.invalid-utf8", "%FF%FE"),
        ("rest.path.lone-surrogate", "%ED%A0%80"),
        ("rest.path.dot-segments", "..%2F..%2Fx"),
        ("rest.path.space", "%20"),
    ];

    private static readonly (string Family, FuzzExpectation Expectation, Func<RouteShape, Baseline, byte[]?> Body)[] BodyAttacks =
    [
        ("rest.body.unclosed", FuzzExpectation.Refusal, (_, _) => "{"u8.ToArray()),
        ("rest.body.not-json", FuzzExpectation.Refusal, (_, _) => "not json"u8.ToArray()),
        ("rest.body.deep-nesting", FuzzExpectation.Refusal, (_, _) => Encoding.UTF8.GetBytes("{\"a\":" + new string('[', ProtobufCases.HugeCount))),
        ("rest.body.top-level-array", FuzzExpectation.Refusal, (_, _) => "[]"u8.ToArray()),
        ("rest.body.top-level-string", FuzzExpectation.Refusal, (_, _) => "\"x\""u8.ToArray()),
        ("rest.body.invalid-utf8", FuzzExpectation.Refusal, (_, _) => [.. "{\""u8, 0xFF, 0xFE, .. "\":1}"u8]),
        ("rest.body.empty", FuzzExpectation.CleanAnswer, (_, _) => []),
        ("rest.body.null", FuzzExpectation.CleanAnswer, (_, _) => "null"u8.ToArray()),
        ("rest.body.duplicate-field", FuzzExpectation.CleanAnswer, (shape, b) =>
        {
            var json = shape.BodyJson(b);
            if (json.Count == 0)
            {
                return "{}"u8.ToArray();
            }

            var (name, value) = json.First();
            var pair = $"{System.Text.Json.JsonSerializer.Serialize(name)}:{value?.ToJsonString() ?? "null"}";
            return Encoding.UTF8.GetBytes("{" + pair + "," + json.ToJsonString()[1..]);
        }),
    ];

    private static IEnumerable<ValueAttack> FieldAttacks(FieldPath path)
    {
        var field = path.Leaf;
        var kind = FieldPath.KindOf(field);
        if (field.IsMap)
        {
            var key = field.MessageType.FindFieldByNumber(1);
            var value = field.MessageType.FindFieldByNumber(2);
            yield return new("rest.value.100k-map-keys", FuzzExpectation.CleanAnswer, true, (_, b, _) =>
            {
                var map = new JsonObject();
                for (var i = 0; i < ProtobufCases.HugeCount; i++)
                {
                    map[key.FieldType == FieldType.String ? b.Marker + i.ToString(CultureInfo.InvariantCulture) : i.ToString(CultureInfo.InvariantCulture)] =
                        JsonComposer.Single(value, b, []) ?? "";
                }

                return map;
            });
            if (key.FieldType == FieldType.String)
            {
                yield return new("rest.value.nul-map-key", FuzzExpectation.CleanAnswer, false,
                    (_, b, _) => new JsonObject { [b.Marker + "\0k"] = JsonComposer.Single(value, b, []) ?? "" });
            }

            yield return new("rest.wrong-type.array-for-map", FuzzExpectation.Refusal, false, (_, _, _) => new JsonArray());
            yield break;
        }

        if (path.IsList)
        {
            yield return new("rest.value.100k-items", FuzzExpectation.CleanAnswer, true, (f, b, _) =>
            {
                var array = new JsonArray();
                for (var i = 0; i < ProtobufCases.HugeCount; i++)
                {
                    array.Add(JsonComposer.Single(f, b, []));
                }

                return array;
            });
            if (kind != FieldKind.Message)
            {
                yield return new("rest.wrong-type.scalar-for-array", FuzzExpectation.Refusal, false, (f, b, _) => JsonComposer.Single(f, b, []) ?? JsonValue.Create("x"));
            }
        }

        foreach (var attack in SingleValueAttacks(kind, field.IsRepeated))
        {
            // A list gets the bad value as its only element.
            yield return path.IsList
                ? attack with { Value = (f, b, t) => attack.Value(f, b, t) is { } node ? new JsonArray(node) : null }
                : attack;
        }
    }

    private static IEnumerable<ValueAttack> SingleValueAttacks(FieldKind kind, bool repeated)
    {
        ValueAttack Clean(string family, JsonAttack value, bool heavy = false) => new(family, FuzzExpectation.CleanAnswer, heavy, value);
        ValueAttack Refuse(string family, JsonAttack value) => new(family, FuzzExpectation.Refusal, false, value);
        ValueAttack RefuseRaw(string family, string raw) => Refuse(family, (_, _, t) => t.Raw(raw));
        IEnumerable<ValueAttack> WrongTypes(params string[] which)
        {
            foreach (var w in which)
            {
                yield return w switch
                {
                    "object" => Refuse("rest.wrong-type.object", (_, _, _) => new JsonObject { ["a"] = 1 }),
                    "array" => Refuse("rest.wrong-type.array", (_, _, _) => new JsonArray(JsonValue.Create(1))),
                    "number" => Refuse("rest.wrong-type.number", (_, _, _) => JsonValue.Create(12)),
                    "bool" => Refuse("rest.wrong-type.bool", (_, _, _) => JsonValue.Create(true)),
                    "string" => Refuse("rest.wrong-type.string", (_, _, _) => JsonValue.Create("abc")),
                    _ => throw new ArgumentOutOfRangeException(nameof(which), w, null),
                };
            }
        }

        switch (kind)
        {
            case FieldKind.String:
                yield return Clean("rest.value.nul", (_, b, _) => JsonValue.Create(b.Marker + "\0x"));
                yield return Clean("rest.value.1MiB", (_, b, _) => JsonValue.Create(b.Marker + new string('a', ProtobufCases.LongText)), heavy: true);
                yield return Clean("rest.value.lone-surrogate", (_, b, t) => t.Raw($"\"{b.Marker}\\ud800\""));
                yield return Refuse("rest.value.invalid-utf8", (_, b, t) => t.Raw([.. Encoding.UTF8.GetBytes("\"" + b.Marker), 0xFF, 0xFE, (byte)'"']));
                yield return Clean("rest.value.control-chars", (_, b, _) => JsonValue.Create(b.Marker + "\u0001\u001b[2J\r\n\u007f\u2028"));
                yield return Clean("rest.value.json-huge-number", (_, _, _) => JsonValue.Create("""{"a":1e999999}"""));
                yield return Clean("rest.value.json-deep-nesting", (_, _, _) => JsonValue.Create(new string('[', ProtobufCases.HugeCount)));
                yield return Clean("rest.value.not-json", (_, b, _) => JsonValue.Create("not json {" + b.Marker));
                foreach (var w in WrongTypes("object", repeated ? "bool" : "array", "number"))
                {
                    yield return w;
                }

                break;
            case FieldKind.Bytes:
                yield return Refuse("rest.value.not-base64", (_, _, _) => JsonValue.Create("%%% not base64 %%%"));
                yield return Clean("rest.value.1MiB-base64", (_, b, _) =>
                {
                    var bytes = new byte[ProtobufCases.LongText];
                    b.Random.NextBytes(bytes);
                    return JsonValue.Create(Convert.ToBase64String(bytes));
                }, heavy: true);
                foreach (var w in WrongTypes("object", "number"))
                {
                    yield return w;
                }

                break;
            case FieldKind.Int32 or FieldKind.UInt32:
                yield return RefuseRaw("rest.value.int32-overflow", kind == FieldKind.Int32 ? "2147483648" : "4294967296");
                yield return RefuseRaw("rest.value.huge-exponent", "1e999999");
                yield return RefuseRaw("rest.value.fraction", "1.5");
                yield return Clean("rest.value.negative", (_, _, _) => JsonValue.Create(-1));
                foreach (var w in WrongTypes("object", repeated ? "bool" : "array", "string"))
                {
                    yield return w;
                }

                break;
            case FieldKind.Int64 or FieldKind.UInt64:
                yield return Refuse("rest.value.int64-overflow", (_, _, _) => JsonValue.Create(kind == FieldKind.Int64 ? "9223372036854775808" : "18446744073709551616"));
                yield return RefuseRaw("rest.value.huge-exponent", "1e999999");
                yield return Clean("rest.value.int64-min", (_, _, _) => JsonValue.Create(long.MinValue.ToString(CultureInfo.InvariantCulture)));
                foreach (var w in WrongTypes("object", repeated ? "bool" : "array", "string"))
                {
                    yield return w;
                }

                break;
            case FieldKind.Floating:
                yield return RefuseRaw("rest.value.huge-exponent", "1e999999");
                yield return Clean("rest.value.nan", (_, _, _) => JsonValue.Create("NaN"));
                yield return Clean("rest.value.infinity", (_, _, _) => JsonValue.Create("-Infinity"));
                foreach (var w in WrongTypes("object", repeated ? "bool" : "array", "string"))
                {
                    yield return w;
                }

                break;
            case FieldKind.Bool:
                foreach (var w in WrongTypes("object", repeated ? "string" : "array", "number"))
                {
                    yield return w;
                }

                break;
            case FieldKind.Enum:
                yield return Refuse("rest.value.enum-unknown-name", (_, _, _) => JsonValue.Create("NO_SUCH_VALUE"));
                yield return Clean("rest.value.enum-unknown-number", (_, _, _) => JsonValue.Create(999));
                foreach (var w in WrongTypes("object", repeated ? "bool" : "array", "bool"))
                {
                    yield return w;
                }

                break;
            case FieldKind.Timestamp:
                yield return Refuse("rest.value.timestamp-year-0", (_, _, _) => JsonValue.Create("0000-12-31T23:59:59Z"));
                yield return Refuse("rest.value.timestamp-year-10000", (_, _, _) => JsonValue.Create("10000-01-01T00:00:00Z"));
                yield return Refuse("rest.value.timestamp-invalid-date", (_, _, _) => JsonValue.Create("2025-02-30T25:61:61Z"));
                yield return Refuse("rest.value.timestamp-not-a-time", (_, _, _) => JsonValue.Create("yesterday"));
                foreach (var w in WrongTypes("number", "object"))
                {
                    yield return w;
                }

                break;
            case FieldKind.Duration:
                yield return Refuse("rest.value.duration-beyond-10000-years", (_, _, _) => JsonValue.Create("315576000001s"));
                yield return Refuse("rest.value.duration-no-unit", (_, _, _) => JsonValue.Create("5"));
                yield return Clean("rest.value.duration-negative", (_, _, _) => JsonValue.Create("-5s"));
                yield return Clean("rest.value.duration-nanos-beyond-9-digits", (_, _, _) => JsonValue.Create("1.0000000001s"));
                foreach (var w in WrongTypes("number", "object"))
                {
                    yield return w;
                }

                break;
            case FieldKind.Message:
                yield return Clean("rest.value.null", (_, _, t) => t.Raw("null"));
                foreach (var w in WrongTypes("string", "number", repeated ? "bool" : "array"))
                {
                    yield return w;
                }

                break;
        }
    }

    private static IEnumerable<FuzzCase> QueryCases(RouteShape shape, Func<string, string, FuzzExpectation, bool, Func<Baseline, RestRequest>, FuzzCase> @case)
    {
        var method = shape.Route.HttpMethod;
        yield return @case("rest.query.unknown-parameter", "noSuchField", FuzzExpectation.CleanAnswer, false,
            b => new RestRequest(method, shape.Url(b, query: ("noSuchField", "1")), null));
        foreach (var field in shape.QueryFields)
        {
            switch (FieldPath.KindOf(field))
            {
                case FieldKind.String:
                    yield return @case("rest.query.nul", field.Name, FuzzExpectation.CleanAnswer, false,
                        b => new RestRequest(method, shape.Url(b, query: (field.JsonName, "%00")), null));
                    yield return @case("rest.query.invalid-utf8", field.Name, FuzzExpectation.CleanAnswer, false,
                        b => new RestRequest(method, shape.Url(b, query: (field.JsonName, "%FF%FE")), null));
                    break;
                case FieldKind.Int32 or FieldKind.Int64 or FieldKind.UInt32 or FieldKind.UInt64:
                    yield return @case("rest.query.int-overflow", field.Name, FuzzExpectation.Refusal, false,
                        b => new RestRequest(method, shape.Url(b, query: (field.JsonName, "99999999999999999999")), null));
                    yield return @case("rest.query.wrong-type", field.Name, FuzzExpectation.Refusal, false,
                        b => new RestRequest(method, shape.Url(b, query: (field.JsonName, "abc")), null));
                    break;
                case FieldKind.Floating or FieldKind.Bool or FieldKind.Timestamp or FieldKind.Duration:
                    yield return @case("rest.query.wrong-type", field.Name, FuzzExpectation.Refusal, false,
                        b => new RestRequest(method, shape.Url(b, query: (field.JsonName, "abc")), null));
                    break;
                case FieldKind.Enum:
                    yield return @case("rest.query.enum-unknown-name", field.Name, FuzzExpectation.Refusal, false,
                        b => new RestRequest(method, shape.Url(b, query: (field.JsonName, "NO_SUCH_VALUE")), null));
                    break;
            }
        }
    }

    /// <summary>"priority" → "prioirty": two letters swapped (or one doubled when too short).</summary>
    private static string Misspell(string name) =>
        name.Length >= 4 ? name[..^3] + name[^2] + name[^3] + name[^1] : name + name[^1];

    /// <summary>How a route splits a request into path variables, query parameters and body.</summary>
    private sealed class RouteShape(MessageDescriptor request, HttpRoute route, IReadOnlySet<string> pathFields)
    {
        public HttpRoute Route => route;

        /// <summary>Top-level non-message fields not bound by the path: the query parameters of a route without a body.</summary>
        public IEnumerable<FieldDescriptor> QueryFields => request.Fields.InFieldNumberOrder()
            .Where(f => !pathFields.Contains(f.Name) && !f.IsMap && FieldPath.KindOf(f) != FieldKind.Message);

        /// <summary>The body's fields, walked: everything but path variables (body <c>*</c>), or the body field's own fields.</summary>
        public IEnumerable<FieldPath> BodyPaths()
        {
            foreach (var path in FieldPath.Walk(request))
            {
                if (pathFields.Contains(path.Name) || (route.Body != "*" && !(path.Name.StartsWith(route.Body + ".", StringComparison.Ordinal))))
                {
                    continue;
                }

                yield return path;
            }
        }

        public JsonObject BodyJson(Baseline baseline, FieldPath? target = null, JsonComposer.LeafValue? leaf = null)
        {
            var json = JsonComposer.Compose(request, baseline, target, leaf);
            foreach (var field in pathFields)
            {
                JsonComposer.Remove(json, request, field);
            }

            if (route.Body is not (null or "*") && request.FindFieldByName(route.Body) is { } bodyField)
            {
                return json[bodyField.JsonName] is JsonObject inner ? (JsonObject)inner.DeepClone() : new JsonObject();
            }

            return json;
        }

        public byte[]? BaselineBody(Baseline baseline) => route.Body is null ? null : Encoding.UTF8.GetBytes(BodyJson(baseline).ToJsonString());

        /// <summary>The route's path with baseline values for its variables (one replaced by <paramref name="rawSegment"/>) and, without a body, its query.</summary>
        public string Url(Baseline baseline, string? attackedField = null, string? rawSegment = null, (string Name, string RawValue)? query = null)
        {
            var url = new StringBuilder();
            var written = new HashSet<string>(StringComparer.Ordinal);
            foreach (var segment in route.Segments)
            {
                if (segment.Field is { } field)
                {
                    if (!written.Add(field))
                    {
                        continue; // {name=a/*/b} is one value
                    }

                    url.Append('/').Append(field == attackedField ? rawSegment : Uri.EscapeDataString(PathValue(baseline, field)));
                }
                else
                {
                    url.Append('/').Append(segment.Kind == RouteSegmentKind.Literal ? segment.Literal : "x");
                }
            }

            if (route.Verb is not null)
            {
                url.Append(':').Append(route.Verb);
            }

            var parameters = new List<string>();
            if (route.Body is null)
            {
                foreach (var field in QueryFields)
                {
                    if (query is { } q && q.Name == field.JsonName)
                    {
                        continue;
                    }

                    if (QueryValue(baseline, field) is { } value)
                    {
                        parameters.Add($"{field.JsonName}={Uri.EscapeDataString(value)}");
                    }
                }
            }

            if (query is { } extra)
            {
                parameters.Add($"{extra.Name}={extra.RawValue}");
            }

            return parameters.Count == 0 ? url.ToString() : $"{url}?{string.Join('&', parameters)}";
        }

        private string PathValue(Baseline baseline, string protoPath)
        {
            var descriptor = request;
            FieldDescriptor? field = null;
            foreach (var name in protoPath.Split('.'))
            {
                field = descriptor?.FindFieldByName(name);
                descriptor = field?.FieldType == FieldType.Message ? field.MessageType : null;
            }

            return field is null ? baseline.Marker : QueryValue(baseline, field) ?? baseline.Marker;
        }

        private static string? QueryValue(Baseline baseline, FieldDescriptor field) => FieldPath.KindOf(field) switch
        {
            FieldKind.String => baseline.String(field) is { Length: > 0 } text ? text : null,
            FieldKind.Bytes => Convert.ToBase64String(Encoding.UTF8.GetBytes(baseline.Marker)),
            FieldKind.Int32 or FieldKind.Int64 or FieldKind.UInt32 or FieldKind.UInt64 => "1",
            FieldKind.Floating => "0.5",
            FieldKind.Bool => Baseline.Bool(field) ? "true" : null,
            FieldKind.Enum => Baseline.EnumValue(field).Name,
            FieldKind.Timestamp => baseline.TimestampJson,
            FieldKind.Duration => $"{Baseline.DurationSeconds}s",
            _ => null,
        };
    }
}
