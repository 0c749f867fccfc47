using System.Diagnostics;

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
        await RunAsync("/usr/bin/python3", ["-m", "unittest", "discover", "-s", "services/workers/python/tests"], BuiltAssemblies.RepositoryRoot);
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task The_node_library_suite_passes()
    {
        var directory = Path.Combine(BuiltAssemblies.RepositoryRoot, "services", "workers", "node");
        Assert.True(Directory.Exists(Path.Combine(directory, "dist", "test")),
            "services/workers/node/dist is missing: build/test.sh builds it (npm ci && npm run build)");
        // The built tests (npm test would rebuild dist under the Node fault tests running beside this one).
        await RunAsync("/bin/sh", ["-c", "exec node --test dist/test/*.test.js"], directory);
    }

    private static async Task RunAsync(string fileName, IEnumerable<string> arguments, string directory)
    {
        var startInfo = new ProcessStartInfo(fileName)
        {
            WorkingDirectory = directory,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (var argument in arguments)
        {
            startInfo.ArgumentList.Add(argument);
        }

        using var process = Process.Start(startInfo)!;
        var output = process.StandardOutput.ReadToEndAsync();
        var errors = process.StandardError.ReadToEndAsync();
        using var timeout = new CancellationTokenSource(TimeSpan.FromMinutes(4));
        try
        {
            await process.WaitForExitAsync(timeout.Token);
        }
        catch (OperationCanceledException)
        {
            process.Kill(entireProcessTree: true);
            throw new TimeoutException($"{fileName} did not finish within 4 minutes:\n{Tail(await output + await errors)}");
        }

        var text = await output + "\n" + await errors;
        Assert.True(process.ExitCode == 0, $"{fileName} {string.Join(' ', arguments)} exited with {process.ExitCode}:\n{Tail(text)}");
    }

    private static string Tail(string text, int lines = 60)
    {
        var all = text.Split('\n');
        return string.Join('\n', all.Skip(Math.Max(0, all.Length - lines)));
    }
}
