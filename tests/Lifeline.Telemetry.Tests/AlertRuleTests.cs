using System.Diagnostics;
using System.Text.RegularExpressions;

namespace Lifeline.Telemetry.Tests;

/// <summary>
/// The Prometheus alerting rules in build/prometheus: valid, and firing exactly where their unit tests say
/// (<c>promtool test rules</c>), and every metric they use is one a service's tests scrape from a real /metrics.
/// </summary>
public sealed partial class AlertRuleTests
{
    private const string Promtool = "/usr/bin/promtool";

    private static string RulesDirectory => Path.Combine(BuiltAssemblies.RepositoryRoot, "build", "prometheus");

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task The_rules_are_valid_and_their_promtool_unit_tests_pass()
    {
        Assert.True(File.Exists(Promtool), $"{Promtool} is missing: build/setup.sh installs Debian's prometheus package");
        var check = await RunAsync("check", "rules", "lifeline-alerts.yml");
        Assert.True(check.ExitCode == 0, check.Output);
        Assert.Contains("SUCCESS: 9 rules found", check.Output);

        var test = await RunAsync("test", "rules", "lifeline-alerts.test.yml");
        Assert.True(test.ExitCode == 0, test.Output);
        Assert.Contains("SUCCESS", test.Output);
    }

    [Fact]
    public void Every_alert_has_a_unit_test_and_every_metric_a_service_that_exposes_it()
    {
        var rules = File.ReadAllText(Path.Combine(RulesDirectory, "lifeline-alerts.yml"));
        var tests = File.ReadAllText(Path.Combine(RulesDirectory, "lifeline-alerts.test.yml"));
        var alerts = AlertName().Matches(rules).Select(m => m.Groups[1].Value).ToList();
        Assert.Equal(9, alerts.Count);
        foreach (var alert in alerts)
        {
            Assert.Contains($"alertname: {alert}\n        exp_alerts:\n          - exp_labels", tests);
        }
        // Each metric is proven present in a real scrape by its service's test project (RuleMetrics.For(service)).
        var metrics = RuleMetrics.All(rules);
        Assert.NotEmpty(metrics);
        Assert.All(metrics, m => Assert.Contains(RuleMetrics.Services, s => m.StartsWith($"lifeline_{s}_", StringComparison.Ordinal)));
    }

    private static async Task<(int ExitCode, string Output)> RunAsync(params string[] args)
    {
        var start = new ProcessStartInfo(Promtool) { WorkingDirectory = RulesDirectory, RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var arg in args)
        {
            start.ArgumentList.Add(arg);
        }
        using var process = Process.Start(start)!;
        using var timeout = new CancellationTokenSource(TimeSpan.FromMinutes(2));
        var stdout = process.StandardOutput.ReadToEndAsync(timeout.Token);
        var stderr = process.StandardError.ReadToEndAsync(timeout.Token);
        await process.WaitForExitAsync(timeout.Token);
        return (process.ExitCode, await stdout + await stderr);
    }

    [GeneratedRegex(@"- alert: (\w+)")]
    private static partial Regex AlertName();
}
