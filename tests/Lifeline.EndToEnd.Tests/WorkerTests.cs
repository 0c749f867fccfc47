using System.Text.Json.Nodes;
using Lifeline.EndToEnd.Tests.Suite;
using Xunit.Abstractions;

namespace Lifeline.EndToEnd.Tests;

/// <summary>
/// Tasks enqueued over REST are run by real worker processes over gRPC, both through the gateway: the demo worker of
/// each library (Python, .NET, Node) against the AppHost-started suite.
/// </summary>
[Collection(SuiteCollection.Name)]
public sealed class WorkerTests(SuiteFixture suite, ITestOutputHelper output)
{
    private static readonly TimeSpan WorkerTimeout = TimeSpan.FromSeconds(120);

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task Python_worker_completes_an_echo_task_and_fails_a_fail_task_enqueued_over_rest()
    {
        var generate = await ProcessRun.RunAsync(
            "/bin/bash", [Path.Combine(suite.RepositoryRoot, "services/workers/python/generate.sh")], suite.RepositoryRoot, TimeSpan.FromSeconds(60));
        Assert.True(generate.ExitCode == 0, generate.ToString());
        await RunDemoWorkerAsync("python", "/usr/bin/python3",
            [Path.Combine(suite.RepositoryRoot, "services/workers/python/example_worker.py"), "--poll-seconds", "5"]);
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public Task Dotnet_demo_worker_completes_an_echo_task_and_fails_a_fail_task_enqueued_over_rest() =>
        RunDemoWorkerAsync("dotnet", SuiteFixture.DotnetHost(),
            [suite.BuiltAssembly("services/workers/dotnet/Lifeline.DemoWorker", "Lifeline.DemoWorker")]);

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task Node_demo_worker_completes_an_echo_task_and_fails_a_fail_task_enqueued_over_rest()
    {
        var demo = Path.Combine(suite.RepositoryRoot, "services/workers/node/dist/examples/demo-worker.js");
        Assert.True(File.Exists(demo), $"{demo} is missing: build/test.sh builds the Node library (npm ci && npm run build)");
        await RunDemoWorkerAsync("node", "node", [demo]);
    }

    /// <summary>Enqueues a demo.echo and a demo.fail task over REST, runs one language's demo worker until both ended, checks their outcomes.</summary>
    private async Task RunDemoWorkerAsync(string language, string fileName, string[] program)
    {
        var (echo, fail, payload) = await EnqueueDemoTasksAsync();
        var worker = await ProcessRun.RunAsync(
            fileName,
            [
                .. program,
                "--credentials", suite.CredentialsFile, "--key-name", Keys.DefaultWorker,
                "--name", $"e2e-{language}-{Guid.NewGuid():N}", "--once", "2",
                "--journal-dir", Path.Combine(suite.WorkDirectory, $"{language}-journal"),
            ],
            suite.RepositoryRoot,
            WorkerTimeout);
        output.WriteLine(worker.ToString());
        Assert.True(worker.ExitCode == 0, worker.ToString());
        Assert.Contains("done: 1 completed, 1 failed", worker.Output, StringComparison.Ordinal);

        await AssertOutcomesAsync(echo, fail, payload, worker);
    }

    private async Task<(string Echo, string Fail, string Payload)> EnqueueDemoTasksAsync()
    {
        var payload = new JsonObject { ["greeting"] = "hello", ["run"] = Guid.NewGuid().ToString("N"), ["n"] = 42 }.ToJsonString();
        var echo = await suite.EnqueueOverRestAsync(Keys.DefaultOperator, "demo.echo", payload);
        var fail = await suite.EnqueueOverRestAsync(Keys.DefaultWorker, "demo.fail", "{}");
        return (echo, fail, payload);
    }

    private async Task AssertOutcomesAsync(string echoId, string failId, string payload, ProcessRun worker)
    {
        var echo = await suite.GetTaskAsync(echoId);
        Assert.True(echo.Status == TaskStatus.Completed, $"echo task is {echo.Status}\n{worker}");
        var result = JsonNode.Parse(echo.Result);
        Assert.True(SuiteCalls.SameJson(payload, result?["echo"]?.ToJsonString()), $"result {echo.Result} does not echo {payload}");

        var fail = await suite.GetTaskAsync(failId);
        Assert.True(fail.Status == TaskStatus.Failed, $"fail task is {fail.Status}\n{worker}");
        Assert.Equal("DEMO_FAILURE", fail.Error.Code);
        Assert.False(fail.Error.Retryable);
        Assert.Equal(echo.AssignedWorkerId, fail.AssignedWorkerId);
    }
}
