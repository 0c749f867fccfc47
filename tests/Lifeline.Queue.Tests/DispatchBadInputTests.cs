using Google.Protobuf.WellKnownTypes;
using Grpc.Core;
using Lifeline.Queue.V1;
using static Lifeline.Queue.Tests.TestData;

namespace Lifeline.Queue.Tests;

/// <summary>
/// A malformed message ends the dispatch stream with INVALID_ARGUMENT, a BadRequest naming the exact field paths
/// (prefixed with the message's oneof name) and ErrorInfo{domain "lifeline"}, and writes nothing: the same checks as
/// the unary calls, from the same code.
/// </summary>
public sealed class DispatchBadInputTests(QueueEnvironment env) : IClassFixture<QueueEnvironment>
{
    private QueueService.QueueServiceClient Client => env.Queue.Client();

    private static DispatchRequest ValidOpen(string type) => DispatchStream.Open("w-bad", [type], slots: 2);

    private static DispatchRequest OpenWith(Action<DispatchOpen> change, string type)
    {
        var request = ValidOpen(type);
        change(request.Open);
        return request;
    }

    private static readonly string SomeId = Guid.NewGuid().ToString();

    // case → (the messages, given a fresh task type; the field paths the refusal must name, exactly).
    private static readonly Dictionary<string, (Func<string, DispatchRequest[]> Messages, string[] Fields)> Matrix = new()
    {
        ["no open first: a complete"] = (
            _ => [new DispatchRequest { Complete = new CompleteTaskRequest { TaskId = SomeId, FencingToken = 1 } }], ["open"]),
        ["no open first: an empty message"] = (_ => [new DispatchRequest()], ["open"]),
        ["no open first: a capacity"] = (_ => [new DispatchRequest { Capacity = new DispatchCapacity { Slots = 1 } }], ["open"]),
        ["a second open"] = (t => [ValidOpen(t), ValidOpen(t)], ["open"]),
        ["a message with no kind"] = (t => [ValidOpen(t), new DispatchRequest { RequestId = 7 }], ["kind"]),
        ["open: every field wrong"] = (
            t => [OpenWith(o =>
            {
                o.WorkerId = "";
                o.TaskTypes.Clear();
                o.Slots = 0;
                o.LeaseDuration = Duration.FromTimeSpan(TimeSpan.Zero);
            }, t)], ["open.worker_id", "open.task_types", "open.lease_duration", "open.slots"]),
        ["open: 501 slots"] = (t => [OpenWith(o => o.Slots = 501, t)], ["open.slots"]),
        ["open: negative slots"] = (t => [OpenWith(o => o.Slots = -1, t)], ["open.slots"]),
        ["open: a type with a space"] = (t => [OpenWith(o => o.TaskTypes.Add("has space"), t)], ["open.task_types[1]"]),
        ["open: 101 types"] = (t => [OpenWith(o => o.TaskTypes.AddRange(Enumerable.Range(0, 100).Select(i => $"t{i}")), t)], ["open.task_types"]),
        ["open: lease of 2 h"] = (t => [OpenWith(o => o.LeaseDuration = Duration.FromTimeSpan(TimeSpan.FromHours(2)), t)], ["open.lease_duration"]),
        ["open: worker id of 129 characters"] = (t => [OpenWith(o => o.WorkerId = new string('w', 129), t)], ["open.worker_id"]),
        ["capacity: -1"] = (t => [ValidOpen(t), new DispatchRequest { Capacity = new DispatchCapacity { Slots = -1 } }], ["capacity.slots"]),
        ["capacity: 501"] = (t => [ValidOpen(t), new DispatchRequest { Capacity = new DispatchCapacity { Slots = 501 } }], ["capacity.slots"]),
        ["complete: malformed id and token 0"] = (
            t => [ValidOpen(t), new DispatchRequest { Complete = new CompleteTaskRequest { TaskId = "nope", FencingToken = 0 } }],
            ["complete.task_id", "complete.fencing_token"]),
        ["complete: result not JSON"] = (
            t => [ValidOpen(t), new DispatchRequest { Complete = new CompleteTaskRequest { TaskId = SomeId, FencingToken = 1, Result = "{nope" } }],
            ["complete.result"]),
        ["fail: no error"] = (
            t => [ValidOpen(t), new DispatchRequest { Fail = new FailTaskRequest { TaskId = SomeId, FencingToken = 1 } }], ["fail.error"]),
        ["fail: error without code, unknown severity, negative retry_after"] = (
            t => [ValidOpen(t), new DispatchRequest
            {
                Fail = new FailTaskRequest
                {
                    TaskId = SomeId, FencingToken = 1, Error = new Common.V1.ErrorDetail { Severity = (Common.V1.Severity)42 },
                    RetryAfter = Duration.FromTimeSpan(TimeSpan.FromSeconds(-1)),
                },
            }], ["fail.error.code", "fail.error.severity", "fail.retry_after"]),
        ["progress: percent 101 and a missing id"] = (
            t => [ValidOpen(t), new DispatchRequest { Progress = new ReportProgressRequest { FencingToken = 1, Percent = 101 } }],
            ["progress.task_id", "progress.percent"]),
        ["extend_lease: 2 h"] = (
            t => [ValidOpen(t), new DispatchRequest
            {
                ExtendLease = new ExtendLeaseRequest { TaskId = SomeId, FencingToken = 1, LeaseDuration = Duration.FromTimeSpan(TimeSpan.FromHours(2)) },
            }], ["extend_lease.lease_duration"]),
        ["release: negative delay and a negative token"] = (
            t => [ValidOpen(t), new DispatchRequest
            {
                Release = new ReleaseTaskRequest { TaskId = SomeId, FencingToken = -4, Delay = Duration.FromTimeSpan(TimeSpan.FromSeconds(-1)) },
            }], ["release.fencing_token", "release.delay"]),
    };

    public static TheoryData<string> Cases => new(Matrix.Keys);

    [Theory(Timeout = TestTimeouts.Default)]
    [MemberData(nameof(Cases))]
    public async Task A_malformed_message_ends_the_stream_with_INVALID_ARGUMENT_naming_the_fields_and_writes_nothing(string name)
    {
        var (messages, fields) = Matrix[name];
        var type = NewType("dispatch.bad");
        var before = await env.CountRowsAsync();
        var requests = messages(type);
        await using var stream = await DispatchStream.StartAsync(Client, requests[0]);
        foreach (var request in requests.Skip(1))
        {
            await stream.SendAsync(request);
        }

        var error = await stream.Ended.WaitAsync(TimeSpan.FromSeconds(30));
        Assert.NotNull(error);
        Assert.Equal(StatusCode.InvalidArgument, error.StatusCode);
        var status = error.GetRpcStatus()!;
        Assert.Equal("lifeline", status.ErrorInfo().Domain);
        Assert.Equal(fields, status.BadRequest().FieldViolations.Select(f => f.Field));
        Assert.Equal(before, await env.CountRowsAsync());
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task The_answers_due_before_a_malformed_message_are_written_before_the_error()
    {
        var type = NewType("dispatch.flush");
        await Client.EnqueueAsync(Spec(type));
        await using var stream = await DispatchStream.OpenAsync(Client, "w-flush", [type], slots: 1);
        var task = await stream.NextTaskAsync();
        var complete = new DispatchRequest { RequestId = 41, Complete = new CompleteTaskRequest { TaskId = task.Id, FencingToken = task.FencingToken } };
        await stream.SendAsync(complete);
        await stream.SendAsync(new DispatchRequest { RequestId = 42 });

        var error = await stream.Ended.WaitAsync(TimeSpan.FromSeconds(30));
        Assert.Equal(StatusCode.InvalidArgument, error!.StatusCode);
        Assert.Equal("completed", await env.StatusAsync(task.Id));
        var ack = stream.AckOf(41);
        Assert.NotNull(ack);
        Assert.True(ack.Accepted);
    }
}
