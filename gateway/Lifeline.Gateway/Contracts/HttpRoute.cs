using System.Text;

namespace Lifeline.Gateway.Contracts;

/// <summary>
/// A <c>google.api.http</c> path template (<c>/api/v1/tasks/{task_id}:cancel</c>) parsed into segments, so the
/// gateway can route and authorize it (as an ASP.NET Core route pattern) and describe it (OpenAPI).
/// Grammar (google/api/http.proto): <c>"/" Segments [":" Verb]</c>, a segment is a literal, <c>*</c>, <c>**</c> or
/// <c>{field.path[=Segments]}</c>.
/// </summary>
internal sealed class HttpRoute
{
    private HttpRoute(string httpMethod, string template, IReadOnlyList<RouteSegment> segments, string? verb, string? body)
    {
        HttpMethod = httpMethod;
        Template = template;
        Segments = segments;
        Verb = verb;
        Body = body;
    }

    /// <summary>GET, POST, PUT, PATCH, DELETE or a custom method, upper case.</summary>
    public string HttpMethod { get; }

    /// <summary>The template as written in the contract.</summary>
    public string Template { get; }

    public IReadOnlyList<RouteSegment> Segments { get; }

    /// <summary>The custom verb after the last segment (<c>cancel</c> in <c>…/{task_id}:cancel</c>), if any.</summary>
    public string? Verb { get; }

    /// <summary><c>*</c> (the whole request), a field name, or null (no body: the rest comes from the query string).</summary>
    public string? Body { get; }

    /// <summary>Field paths bound from the path, in order (<c>task_id</c>).</summary>
    public IEnumerable<string> PathFields => Segments.Where(s => s.Field is not null).Select(s => s.Field!).Distinct(StringComparer.Ordinal);

    /// <exception cref="FormatException">The template does not follow the grammar.</exception>
    public static HttpRoute Parse(string httpMethod, string template, string? body)
    {
        if (!template.StartsWith('/'))
        {
            throw new FormatException($"HTTP template '{template}' must start with '/'.");
        }

        // The verb is a ':' after the last '/' that is outside braces.
        string? verb = null;
        var path = template;
        var depth = 0;
        for (var i = template.Length - 1; i > 0; i--)
        {
            var c = template[i];
            if (c == '}')
            {
                depth++;
            }
            else if (c == '{')
            {
                depth--;
            }
            else if (c == '/' && depth == 0)
            {
                break;
            }
            else if (c == ':' && depth == 0)
            {
                verb = template[(i + 1)..];
                path = template[..i];
                break;
            }
        }

        var segments = new List<RouteSegment>();
        foreach (var part in SplitOutsideBraces(path[1..]))
        {
            if (part.StartsWith('{'))
            {
                if (!part.EndsWith('}'))
                {
                    throw new FormatException($"HTTP template '{template}': unclosed variable '{part}'.");
                }

                var inner = part[1..^1];
                var equals = inner.IndexOf('=', StringComparison.Ordinal);
                var field = equals < 0 ? inner : inner[..equals];
                var pattern = equals < 0 ? "*" : inner[(equals + 1)..];
                foreach (var sub in pattern.Split('/'))
                {
                    segments.Add(sub switch
                    {
                        "*" => new RouteSegment(null, field, RouteSegmentKind.Single),
                        "**" => new RouteSegment(null, field, RouteSegmentKind.Rest),
                        _ => new RouteSegment(sub, field, RouteSegmentKind.Literal),
                    });
                }
            }
            else
            {
                segments.Add(part switch
                {
                    "*" => new RouteSegment(null, null, RouteSegmentKind.Single),
                    "**" => new RouteSegment(null, null, RouteSegmentKind.Rest),
                    _ when part.Length == 0 => throw new FormatException($"HTTP template '{template}' has an empty segment."),
                    _ => new RouteSegment(part, null, RouteSegmentKind.Literal),
                });
            }
        }

        return new HttpRoute(httpMethod.ToUpperInvariant(), template, segments, verb, string.IsNullOrEmpty(body) ? null : body);
    }

    /// <summary>
    /// The ASP.NET Core route pattern that matches the same paths: <c>/api/v1/tasks/{task_id}:cancel</c>.
    /// Parameter names are positional (<c>p0</c>, <c>p1</c> …): the gateway only routes; the service binds fields.
    /// </summary>
    public string ToRoutePattern()
    {
        var builder = new StringBuilder();
        var index = 0;
        foreach (var segment in Segments)
        {
            builder.Append('/');
            builder.Append(segment.Kind switch
            {
                RouteSegmentKind.Literal => segment.Literal,
                RouteSegmentKind.Single => $"{{p{index++}}}",
                _ => $"{{**p{index++}}}",
            });
        }

        if (Verb is not null)
        {
            builder.Append(':').Append(Verb);
        }

        return builder.ToString();
    }

    /// <summary>The OpenAPI path: each field variable once, as <c>{field}</c>; anonymous wildcards as <c>{_n}</c>.</summary>
    public string ToOpenApiPath()
    {
        var builder = new StringBuilder();
        string? previousField = null;
        var anonymous = 0;
        foreach (var segment in Segments)
        {
            if (segment.Field is not null && segment.Field == previousField)
            {
                continue; // {name=shelves/*} is one parameter in OpenAPI
            }

            previousField = segment.Field;
            builder.Append('/');
            builder.Append(segment switch
            {
                { Field: not null } => $"{{{segment.Field}}}",
                { Kind: RouteSegmentKind.Literal } => segment.Literal,
                _ => $"{{_{anonymous++}}}",
            });
        }

        if (Verb is not null)
        {
            builder.Append(':').Append(Verb);
        }

        return builder.ToString();
    }

    private static IEnumerable<string> SplitOutsideBraces(string path)
    {
        var start = 0;
        var depth = 0;
        for (var i = 0; i < path.Length; i++)
        {
            switch (path[i])
            {
                case '{':
                    depth++;
                    break;
                case '}':
                    depth--;
                    break;
                case '/' when depth == 0:
                    yield return path[start..i];
                    start = i + 1;
                    break;
            }
        }

        yield return path[start..];
    }
}

internal enum RouteSegmentKind
{
    Literal,

    /// <summary><c>*</c>: one segment.</summary>
    Single,

    /// <summary><c>**</c>: the rest of the path.</summary>
    Rest,
}

/// <param name="Literal">The text of a literal segment.</param>
/// <param name="Field">The request field the segment binds to, if it is (part of) a variable.</param>
internal sealed record RouteSegment(string? Literal, string? Field, RouteSegmentKind Kind);
