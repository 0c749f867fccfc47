using System.Diagnostics;
using System.Net;
using Google.Protobuf.WellKnownTypes;
using Grpc.Core;
using Aspire.Hosting.ApplicationModel;
using Lifeline.EndToEnd.Tests.Suite;
using Lifeline.Processes;
using Lifeline.Queue.V1;
using Lifeline.Registry.V1;
using Microsoft.Extensions.DependencyInjection;

namespace Lifeline.EndToEnd.Tests;

/// <summary>A crashed service is restarted by the AppHost, and the suite heals without anyone's help; one stopped on purpose stays stopped.</summary>
[Collection(SuiteCollection.Name)]
public sealed class RecoveryTests(SuiteFixture suite)
{
    // Only this test's own worker leases this type.
    private const string TaskType = "e2e.recovery";

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task Killing_the_queue_service_makes_the_apphost_restart_it_and_a_new_task_completes()
    {
        var killed = suite.ResourcePid("queue") ?? throw new InvalidOperationException($"no live queue process\n{suite.ResourceStates()}");
        Assert.Contains("Lifeline.Queue", UnixProcess.CommandLine(killed), StringComparison.Ordinal);

        Assert.True(UnixProcess.Signal(killed, UnixProcess.SigKill), $"could not SIGKILL queue pid {killed}");
        Assert.True(await UnixProcess.WaitForExitAsync(killed, TimeSpan.FromSeconds(10)), $"queue pid {killed} survived SIGKILL");

        // The AppHost notices (Aspire reports the resource exited), restarts it (back-off from 1 s) and Aspire reports the new pid.
        var restarted = await EventuallyAsync(
            () => Task.FromResult(suite.ResourcePid("queue") is { } pid && pid != killed && UnixProcess.CommandLine(pid).Contains("Lifeline.Queue", StringComparison.Ordinal)),
            TimeSpan.FromSeconds(90));
        Assert.True(restarted, $"the queue was not restarted within 90 s\n{suite.ResourceStates()}\n{suite.ApphostLogTail()}");
        await suite.WaitUntilHealthyAsync(TimeSpan.FromSeconds(90));

        // Healed: a task enqueued over REST now is leased, started and completed over gRPC.
        var taskId = await EventuallyValueAsync(() => suite.EnqueueOverRestAsync(Keys.DefaultWorker, TaskType, """{"after":"restart"}"""));
        var registry = suite.Registry(Keys.DefaultWorker);
        var worker = (await registry.RegisterWorkerAsync(new RegisterWorkerRequest
        {
            Name = $"e2e-recovery-{Guid.NewGuid():N}", Type = WorkerType.Standalone, Capabilities = { TaskType },
        })).Worker;
        try
        {
            var queue = suite.Queue(Keys.DefaultWorker);
            var leased = await EventuallyValueAsync(async () =>
            {
                var response = await queue.LeaseTasksAsync(new LeaseTasksRequest
                {
                    WorkerId = worker.Id, TaskTypes = { TaskType }, MaxTasks = 1, Wait = Duration.FromTimeSpan(TimeSpan.FromSeconds(5)),
                });
                return response.Tasks.SingleOrDefault(t => t.Id == taskId) ?? throw new InvalidOperationException("our task was not leased yet");
            });
            await queue.StartTaskAsync(new StartTaskRequest { TaskId = taskId, FencingToken = leased.FencingToken });
            await queue.CompleteTaskAsync(new CompleteTaskRequest { TaskId = taskId, FencingToken = leased.FencingToken, Result = """{"healed":true}""" });
        }
        finally
        {
            await registry.DeregisterWorkerAsync(new DeregisterWorkerRequest { WorkerId = worker.Id });
        }

        var task = await suite.GetTaskAsync(taskId);
        Assert.Equal(TaskStatus.Completed, task.Status);
        Assert.True(SuiteCalls.SameJson("""{"healed":true}""", task.Result), task.Result);
        Assert.Equal(HttpStatusCode.OK, await suite.HealthAsync());
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task A_service_stopped_with_the_dashboards_stop_command_stays_stopped_until_started_again()
    {
        var commands = suite.App.Services.GetRequiredService<ResourceCommandService>();
        var notifications = suite.App.ResourceNotifications;
        var before = suite.ResourcePid("checkpoint") ?? throw new InvalidOperationException($"no live checkpoint process\n{suite.ResourceStates()}");
        try
        {
            var stop = await commands.ExecuteCommandAsync("checkpoint", KnownResourceCommands.StopCommand);
            Assert.True(stop.Success, stop.Message);
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(60));
            var stopped = await notifications.WaitForResourceAsync("checkpoint", e => KnownResourceStates.TerminalStates.Contains(e.Snapshot.State?.Text), timeout.Token);
            Assert.Equal(0, stopped.Snapshot.ExitCode);

            // Longer than the restarter's first back-off (1 s) and a start: a stop on purpose is not a crash.
            await Task.Delay(TimeSpan.FromSeconds(8));
            Assert.Null(suite.ResourcePid("checkpoint"));
            Assert.False(UnixProcess.IsAlive(before), $"checkpoint pid {before} still runs after Stop");
        }
        finally
        {
            var start = await commands.ExecuteCommandAsync("checkpoint", KnownResourceCommands.StartCommand);
            Assert.True(start.Success, start.Message);
            using var healthy = new CancellationTokenSource(TimeSpan.FromSeconds(120));
            await notifications.WaitForResourceHealthyAsync("checkpoint", healthy.Token);
        }

        Assert.NotNull(suite.ResourcePid("checkpoint"));
        await suite.WaitUntilHealthyAsync(TimeSpan.FromSeconds(90));
    }

    private static async Task<bool> EventuallyAsync(Func<Task<bool>> condition, TimeSpan timeout)
    {
        var stopwatch = Stopwatch.StartNew();
        while (stopwatch.Elapsed < timeout)
        {
            if (await condition())
            {
                return true;
            }

            await Task.Delay(250);
        }

        return false;
    }

    /// <summary>Retries a call for a while: right after a restart the gateway may still see the old connection fail.</summary>
    private static async Task<T> EventuallyValueAsync<T>(Func<Task<T>> call)
    {
        var stopwatch = Stopwatch.StartNew();
        while (true)
        {
            try
            {
                return await call();
            }
            catch (Exception ex) when (ex is RpcException or InvalidOperationException or Xunit.Sdk.XunitException or HttpRequestException
                && stopwatch.Elapsed < TimeSpan.FromSeconds(30))
            {
                await Task.Delay(500);
            }
        }
    }
}
