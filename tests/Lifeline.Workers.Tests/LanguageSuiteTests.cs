namespace Lifeline.Workers.Tests;

/// <summary>
/// The Python and Node libraries' own test suites (journal, retry classification, backoff, connection states,
/// batching, and in-process fault tests against a real gRPC server that goes down and comes back), run here so
/// that <c>build/test.sh</c> counts them: each passes only when its whole suite does.
/// </summary>
public sealed class LanguageSuiteTests
{
    [Fact(Timeout = TestTimeouts.Default)]
    public async Task The_python_library_suite_passes()
    {
        var output = await RunAsync("/usr/bin/python3", ["-m", "unittest", "discover", "-s", "services/workers/python/tests"], BuiltAssemblies.RepositoryRoot);
        // unittest exits 0 with skipped tests ("OK (skipped=N)"): the in-process fault tests skip without stubs.
        Assert.DoesNotContain("skipped=", output, StringComparison.Ordinal);
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task The_node_library_suite_passes()
    {
        var directory = Path.Combine(BuiltAssemblies.RepositoryRoot, "services", "workers", "node");
        Assert.True(Directory.Exists(Path.Combine(directory, "dist", "test")),
            "services/workers/node/dist is missing: build/test.sh builds it (npm ci && npm run build)");
        // The built tests (npm test would rebuild dist under the Node fault tests running beside this one).
        var output = await RunAsync("/bin/sh", ["-c", "exec node --test dist/test/*.test.js"], directory);
        Assert.Contains("# skipped 0", output, StringComparison.Ordinal);
    }

    /// <returns>The suite's output, once it passed.</returns>
    private static async Task<string> RunAsync(string fileName, IEnumerable<string> arguments, string directory)
    {
        var run = await ProcessRun.RunAsync(fileName, arguments, directory, TimeSpan.FromMinutes(4));
        Assert.True(run.ExitCode == 0, Tail(run.ToString()));
        return run.Output;
    }

    private static string Tail(string text, int lines = 80)
    {
        var all = text.Split('\n');
        return string.Join('\n', all.Skip(Math.Max(0, all.Length - lines)));
    }
}
