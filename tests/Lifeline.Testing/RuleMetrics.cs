using System.Text.RegularExpressions;

namespace Lifeline.Testing;

/// <summary>
/// The metrics the Prometheus alerting rules (build/prometheus/lifeline-alerts.yml) use, and a real scrape of a service's
/// <c>/metrics</c>: each service's tests scrape it after real traffic and find every metric the rules use of that service,
/// so the rules and the code cannot drift apart.
/// </summary>
public static partial class RuleMetrics
{
    /// <summary>The services whose metrics the rules use (the prefix after <c>lifeline_</c>).</summary>
    public static readonly string[] Services = ["queue", "registry", "recovery", "backup", "checkpoint"];

    public static string RulesPath => Path.Combine(BuiltAssemblies.RepositoryRoot, "build", "prometheus", "lifeline-alerts.yml");

    /// <summary>Every metric name the rules text uses (histogram series with their _bucket/_count suffix).</summary>
    public static IReadOnlyList<string> All(string rules)
    {
        // Label names look like metric names: take out what stands in a `by (…)`, after `$labels.` or before `=`/`:`.
        var labels = LabelList().Matches(rules).SelectMany(m => m.Groups[1].Value.Split(',', StringSplitOptions.TrimEntries))
            .Concat(LabelUse().Matches(rules).Select(m => m.Groups[1].Value.Length > 0 ? m.Groups[1].Value : m.Groups[2].Value))
            .ToHashSet(StringComparer.Ordinal);
        return [.. MetricName().Matches(rules).Select(m => m.Value).Where(m => !labels.Contains(m)).Distinct().Order()];
    }

    /// <summary>The metrics of one service the rules use, each with the <c>le</c> bounds the rules name on it.</summary>
    public static IReadOnlyList<(string Metric, string[] Bounds)> For(string service)
    {
        var rules = File.ReadAllText(RulesPath);
        return [.. All(rules).Where(m => m.StartsWith($"lifeline_{service}_", StringComparison.Ordinal))
            .Select(m => (m, Bound().Matches(rules).Where(b => b.Groups[1].Value == m).Select(b => b.Groups[2].Value).Distinct().ToArray()))];
    }

    /// <summary>GET /metrics of a service host over its HTTP/2 loopback port (the Prometheus text format).</summary>
    public static async Task<string> ScrapeAsync(ServiceHost host, CancellationToken ct = default)
    {
        using var http = new HttpClient
        {
            BaseAddress = host.Address,
            DefaultRequestVersion = System.Net.HttpVersion.Version20,
            DefaultVersionPolicy = HttpVersionPolicy.RequestVersionExact,
            Timeout = TimeSpan.FromSeconds(30),
        };
        using var response = await http.GetAsync("/metrics", ct);
        response.EnsureSuccessStatusCode();
        return await response.Content.ReadAsStringAsync(ct);
    }

    /// <summary>The names and bounds of <paramref name="expected"/> missing from <paramref name="scrape"/> (empty: all there).</summary>
    public static IReadOnlyList<string> Missing(string scrape, IEnumerable<(string Metric, string[] Bounds)> expected)
    {
        var lines = scrape.Split('\n');
        var missing = new List<string>();
        foreach (var (metric, bounds) in expected)
        {
            var series = lines.Where(l => l.StartsWith(metric + "{", StringComparison.Ordinal) || l.StartsWith(metric + " ", StringComparison.Ordinal)).ToList();
            if (series.Count == 0)
            {
                missing.Add(metric);
            }
            foreach (var bound in bounds.Where(b => !series.Any(l => l.Contains($"le=\"{b}\"", StringComparison.Ordinal))))
            {
                missing.Add($"{metric}{{le=\"{bound}\"}}");
            }
        }
        return missing;
    }

    [GeneratedRegex(@"\bby \(([^)]*)\)")]
    private static partial Regex LabelList();

    [GeneratedRegex(@"\$labels\.(\w+)|\b(lifeline_[a-z0-9_]+)\s*[=:]")]
    private static partial Regex LabelUse();

    [GeneratedRegex(@"\blifeline_[a-z0-9_]+")]
    private static partial Regex MetricName();

    [GeneratedRegex(@"\b(lifeline_[a-z0-9_]+)\{le=""([^""]+)""\}")]
    private static partial Regex Bound();
}
