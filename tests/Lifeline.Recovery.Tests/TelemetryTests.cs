using Lifeline.Queue.Telemetry;
using Lifeline.Recovery.InFlight;
using Lifeline.Recovery.Leadership;
using Lifeline.ServiceDefaults.Leadership;
using Microsoft.Extensions.DependencyInjection;
using Lifeline.Recovery.Telemetry;
using Lifeline.ServiceDefaults.Telemetry;

namespace Lifeline.Recovery.Tests;

/// <summary>
/// Recovery's telemetry against the real registry, queue and checkpoint services: a lost worker's task recovered is
/// counted with its time to recovery, its span is the parent of the queue's RecoverTask span (the trace context crosses
/// the gRPC call), and a /metrics scrape has every recovery metric the alerting rules use.
/// </summary>
public sealed class TelemetryTests(RecoveryEnvironment env) : IClassFixture<RecoveryEnvironment>
{
    [Fact(Timeout = TestTimeouts.Default)]
    public async Task A_recovered_task_is_counted_with_its_time_to_recovery_and_traced_across_the_call_to_the_queue()
    {
        using var recorded = new HostMeasurements(env.Recovery, RecoveryTelemetry.Name);
        using var spans = new RecordedSpans(RecoveryTelemetry.Name, QueueTelemetry.Name);

        var type = InFlightTestSupport.NewType();
        var queue = env.QueueClient();
        var task = await queue.EnqueueAsync(type);
        var doomed = await LiveWorker.StartAsync(env, type);
        var leased = await queue.LeaseOneAsync(doomed.Id, type, start: true, leaseSeconds: 300);
        Assert.Equal(task.Id, leased.Id);
        await doomed.CrashAsync();
        await using var rescuer = await LiveWorker.StartAsync(env, type);
        Assert.Equal(task.Id, (await queue.LeaseOneAsync(rescuer.Id, type, start: true)).Id); // recovered, leased again

        var action = Assert.Single(await env.ActionsAsync(task.Id, 1));
        // The metric and the span come after the action is recorded (what ActionsAsync waited for): wait for the span's end.
        await InFlightTestSupport.EventuallyAsync(() => Task.FromResult(spans.OfTask("recovery.recover_task", task.Id)
            .FirstOrDefault(s => Equals(s.GetTagItem(RecoveryTelemetry.ResultTag), nameof(RecoveryResult.Recovered)))),
            TimeSpan.FromSeconds(5), $"the recovered span of task {task.Id}");
        var trigger = RecoveryTelemetry.TriggerName(action.Trigger);
        Assert.Equal(1, recorded.Sum(RecoveryTelemetry.TasksName, (RecoveryTelemetry.ResultTag, "recovered"), (RecoveryTelemetry.TriggerTag, trigger)));
        Assert.Equal(0, recorded.Sum(RecoveryTelemetry.TasksName, (RecoveryTelemetry.ResultTag, "failed")));
        var timeToRecovery = Assert.Single(recorded.Values(RecoveryTelemetry.TimeToRecoveryName, (RecoveryTelemetry.TriggerTag, trigger)));
        // The action log keeps the same interval (detected → recovered).
        Assert.Equal(action.TimeToRecovery.ToTimeSpan().TotalSeconds, timeToRecovery, 2);

        // Two triggers (the registry's lost-worker event and the periodic scan) may both try; the fenced
        // RecoverTask makes the later one a no-op (AlreadyRecovered → NothingToDo), so exactly one span recovered.
        var recover = Assert.Single(spans.OfTask("recovery.recover_task", task.Id),
            s => Equals(s.GetTagItem(RecoveryTelemetry.ResultTag), nameof(RecoveryResult.Recovered)));
        Assert.Equal(doomed.Id, recover.GetTagItem(TaskTrace.WorkerIdTag));
        Assert.All(spans.OfTask("recovery.recover_task", task.Id).Where(s => s != recover),
            s => Assert.Equal(nameof(RecoveryResult.NothingToDo), s.GetTagItem(RecoveryTelemetry.ResultTag)));
        // One trace: recovery → gRPC → queue.
        var queueSide = Assert.Single(spans.OfTask("queue.recover", task.Id), s => s.TraceId == recover.TraceId);
        Assert.Single(queueSide.Links); // and linked to the task's enqueue

        var scrape = await RuleMetrics.ScrapeAsync(env.Recovery);
        var expected = RuleMetrics.For("recovery");
        Assert.Contains(expected, e => e.Metric == "lifeline_recovery_tasks_total");
        Assert.Empty(RuleMetrics.Missing(scrape, expected));
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task Recoveries_of_one_task_racing_from_several_triggers_record_and_count_it_once()
    {
        // Counted per task through the spans: the recovered-tasks metric is counted in the same branch as the span's
        // "Recovered" result, and has no task tag (other tests' workers are recovered meanwhile).
        using var spans = new RecordedSpans(RecoveryTelemetry.Name);
        var type = InFlightTestSupport.NewType();
        var queue = env.QueueClient();
        var task = await queue.EnqueueAsync(type);
        var doomed = await LiveWorker.StartAsync(env, type);
        await queue.LeaseOneAsync(doomed.Id, type, start: true, leaseSeconds: 300);
        var held = await queue.GetTaskAsync(new Queue.V1.GetTaskRequest { TaskId = task.Id });
        var leadership = await env.RecoveryClient().GetLeadershipAsync(new Recovery.V1.GetLeadershipRequest());
        Assert.True(leadership.IsLeader);
        var term = new LeaderTerm(RecoveryLeadership.Role, leadership.LeaderInstance, leadership.FencingToken, DateTime.UtcNow, CancellationToken.None);
        var recoverer = env.Recovery.App.Services.GetRequiredService<TaskRecoverer>();
        await doomed.CrashAsync();

        // Eight attempts at a time under four triggers, racing each other and the instance's own watcher and scanner,
        // until the queue has moved the task on.
        Recovery.V1.RecoveryTrigger[] triggers = [Recovery.V1.RecoveryTrigger.WorkerLost, Recovery.V1.RecoveryTrigger.WorkerGone,
            Recovery.V1.RecoveryTrigger.LeaseExpired, Recovery.V1.RecoveryTrigger.NotStarted];
        var results = new List<RecoveryResult>();
        var deadline = DateTime.UtcNow.AddSeconds(30);
        while ((await queue.GetTaskAsync(new Queue.V1.GetTaskRequest { TaskId = task.Id })).Task.Status == Queue.V1.TaskStatus.Running)
        {
            Assert.True(DateTime.UtcNow < deadline, "the task was not recovered within 30 s");
            var round = await Task.WhenAll(Enumerable.Range(0, 8).Select(i =>
                recoverer.RecoverAsync("default", held.Task, triggers[i % triggers.Length], DateTime.UtcNow, term, CancellationToken.None)));
            results.AddRange(round.Select(r => r.Result));
            await Task.Delay(50);
        }
        await Task.Delay(1000); // the watcher's and the scanner's attempts in flight end

        Assert.True(results.Count(r => r == RecoveryResult.Recovered) <= 1, string.Join(", ", results));
        Assert.DoesNotContain(RecoveryResult.Failed, results);
        var action = Assert.Single(await env.ActionsAsync(task.Id, 1));
        var attempts = spans.OfTask("recovery.recover_task", task.Id).ToList();
        Assert.True(attempts.Count >= 8, $"{attempts.Count} attempts");
        var recovered = Assert.Single(attempts, s => Equals(s.GetTagItem(RecoveryTelemetry.ResultTag), nameof(RecoveryResult.Recovered)));
        Assert.Equal(RecoveryTelemetry.TriggerName(action.Trigger), recovered.GetTagItem(RecoveryTelemetry.TriggerTag)); // the record's trigger
        var after = (await queue.GetTaskAsync(new Queue.V1.GetTaskRequest { TaskId = task.Id })).Task;
        Assert.Equal(1, after.RecoveryCount);
        Assert.Equal(Queue.V1.TaskStatus.Pending, after.Status);
    }
}
