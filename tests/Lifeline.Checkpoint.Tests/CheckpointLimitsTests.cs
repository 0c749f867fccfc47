using Google.Protobuf.WellKnownTypes;
using Google.Rpc;
using Grpc.Core;
using Lifeline.Checkpoint.V1;
using Lifeline.Testing;
using static Lifeline.Checkpoint.Tests.TestData;

namespace Lifeline.Checkpoint.Tests;

/// <summary>
/// Bounds of the checkpoint service's input: counts checked before any item (quick, small refusals), state JSON
/// held to what the rest of the suite stores, text PostgreSQL can hold, exact durations and timestamps, and page
/// tokens accepted only as issued. Refusals are INVALID_ARGUMENT and write nothing.
/// </summary>
public sealed class CheckpointLimitsTests(CheckpointEnvironment env) : IClassFixture<CheckpointEnvironment>
{
    private const int SmallStatusBytes = 4096;
    // Quick even beside the whole suite on a loaded two-core machine; before the count-first checks these took 10–17 s.
    private static readonly TimeSpan Quick = TimeSpan.FromSeconds(6);

    private CheckpointService.CheckpointServiceClient Client => env.Checkpoint.Checkpoints();

    private static DateTime Deadline => DateTime.UtcNow.AddSeconds(30);

    [Fact(Timeout = 120_000)]
    public async Task A_checkpoint_with_100000_artifacts_is_refused_before_any_artifact_is_checked()
    {
        var workflow = NewWorkflow("limits");
        var request = Create(workflow, SmallState(1));
        request.State.Artifacts.AddRange(Enumerable.Range(0, 100_000).Select(_ => new ArtifactRef { Id = "", Checksum = "nope", Version = -1 }));

        var status = await RefusedSmallAndQuickAsync(() => Client.CreateCheckpointAsync(request, deadline: Deadline).ResponseAsync);

        var violation = Assert.Single(status.GetDetail<BadRequest>().FieldViolations);
        Assert.Equal("state.artifacts", violation.Field);
        Assert.Contains("10000", violation.Description, StringComparison.Ordinal);
        Assert.Contains("100001", violation.Description, StringComparison.Ordinal);
        await AssertNothingWrittenAsync(workflow);
    }

    [Fact(Timeout = 120_000)]
    public async Task A_checkpoint_with_thousands_of_bad_artifacts_lists_only_the_first_problems()
    {
        var workflow = NewWorkflow("limits");
        var request = Create(workflow, SmallState(1));
        request.State.Artifacts.AddRange(Enumerable.Range(0, 5000).Select(_ => new ArtifactRef { Id = "", Checksum = "nope", Version = -1 }));

        var status = await RefusedSmallAndQuickAsync(() => Client.CreateCheckpointAsync(request, deadline: Deadline).ResponseAsync);

        var violations = status.GetDetail<BadRequest>().FieldViolations;
        Assert.InRange(violations.Count, 2, 13);
        Assert.Equal("state.artifacts", violations[^1].Field);
        await AssertNothingWrittenAsync(workflow);
    }

    [Fact(Timeout = 120_000)]
    public async Task A_checkpoint_with_100000_agent_states_or_tags_is_refused_before_any_is_checked()
    {
        var workflow = NewWorkflow("limits");
        var agents = Create(workflow, SmallState(1));
        foreach (var i in Enumerable.Range(0, 100_000))
        {
            agents.State.AgentStates[$"agent-{i}"] = "not json";
        }
        var status = await RefusedSmallAndQuickAsync(() => Client.CreateCheckpointAsync(agents, deadline: Deadline).ResponseAsync);
        Assert.Equal("state.agent_states", Assert.Single(status.GetDetail<BadRequest>().FieldViolations).Field);

        var tags = Create(workflow, SmallState(1));
        tags.Tags.AddRange(Enumerable.Range(0, 100_000).Select(_ => ""));
        status = await RefusedSmallAndQuickAsync(() => Client.CreateCheckpointAsync(tags, deadline: Deadline).ResponseAsync);
        Assert.Equal("tags", Assert.Single(status.GetDetail<BadRequest>().FieldViolations).Field);
        await AssertNothingWrittenAsync(workflow);
    }

    public static TheoryData<string, string> UnstorableInput => new()
    {
        { "context number beyond numeric", "state.context" },
        { "context unpaired surrogate", "state.context" },
        { "agent state number beyond numeric", "state.agent_states[planner]" },
        { "agent state unpaired surrogate key", "state.agent_states[planner]" },
        { "NUL in the name", "name" },
        { "NUL in the agent", "agent" },
        { "NUL in the description", "description" },
        { "NUL in a tag", "tags[0]" },
        { "NUL in an agent name", "state.agent_states (entry 2)" },
        { "1 MiB agent name", "state.agent_states (entry 2)" },
    };

    [Theory(Timeout = 120_000)]
    [MemberData(nameof(UnstorableInput))]
    public async Task Input_the_suite_cannot_store_is_refused_on_the_field_and_writes_nothing(string @case, string field)
    {
        var workflow = NewWorkflow("store");
        var request = Create(workflow, SmallState(1));
        switch (@case)
        {
            case "context number beyond numeric": request.State.Context = """{"a":1e999999}"""; break;
            case "context unpaired surrogate": request.State.Context = """{"a":"\ud800"}"""; break;
            case "agent state number beyond numeric": request.State.AgentStates["planner"] = """{"n":[-1e-999999]}"""; break;
            case "agent state unpaired surrogate key": request.State.AgentStates["planner"] = """{"\udfff":1}"""; break;
            case "NUL in the name": request.Name = "step\0"; break;
            case "NUL in the agent": request.Agent = "a\0"; break;
            case "NUL in the description": request.Description = "\0"; break;
            case "NUL in a tag": request.Tags.Add("t\0"); break;
            case "NUL in an agent name": request.State.AgentStates["bad\0agent"] = "{}"; break;
            case "1 MiB agent name": request.State.AgentStates[new string('a', 1024 * 1024)] = "{}"; break;
            default: throw new ArgumentOutOfRangeException(nameof(@case), @case, null);
        }

        var error = await Assert.ThrowsAsync<RpcException>(() => Client.CreateCheckpointAsync(request, deadline: Deadline).ResponseAsync);

        Assert.Equal(StatusCode.InvalidArgument, error.StatusCode);
        Assert.True(error.WireBytes() < SmallStatusBytes, $"the refusal took {error.WireBytes()} bytes");
        Assert.Equal(field, Assert.Single(error.GetRpcStatus()!.GetDetail<BadRequest>().FieldViolations).Field);
        await AssertNothingWrittenAsync(workflow);
    }

    [Fact(Timeout = 120_000)]
    public async Task State_JSON_at_the_edge_of_what_PostgreSQL_holds_is_saved_as_written()
    {
        var workflow = NewWorkflow("edge");
        var state = SmallState(1);
        state.Context = """{"big":1e131071,"small":1e-16383,"emoji":"\ud83d\ude00"}""";
        var saved = await Client.CreateCheckpointAsync(Create(workflow, state), deadline: Deadline);
        var read = (await Client.GetCheckpointAsync(new GetCheckpointRequest { CheckpointId = saved.Metadata.Id }, deadline: Deadline)).Checkpoint;
        AssertSameState(state, read.State);
    }

    [Fact(Timeout = 120_000)]
    public async Task Invalid_durations_and_timestamps_are_refused_on_their_field()
    {
        var workflow = NewWorkflow("times");
        await Client.CreateCheckpointAsync(Create(workflow, SmallState(1)), deadline: Deadline);
        var before = await env.CountCheckpointsAsync(workflow);

        foreach (var timeout in new[] { new Duration { Nanos = -1 }, new Duration { Seconds = 1, Nanos = 1_000_000_000 }, new Duration { Seconds = 3601 } })
        {
            var request = new RollbackRequest { WorkflowId = workflow, LatestValid = true, Timeout = timeout };
            var status = await RefusedAsync(async () =>
            {
                using var call = Client.Rollback(request, deadline: Deadline);
                await call.ResponseStream.MoveNext();
            }, StatusCode.InvalidArgument);
            AssertViolation(status, "timeout");
        }
        var badTime = new Timestamp { Seconds = 253_402_300_800 };
        AssertViolation(await RefusedAsync(() => Client.ListCheckpointsAsync(
            new ListCheckpointsRequest { WorkflowId = workflow, CreatedAfter = badTime }, deadline: Deadline).ResponseAsync, StatusCode.InvalidArgument), "created_after");
        AssertViolation(await RefusedAsync(() => Client.ListCheckpointsAsync(
            new ListCheckpointsRequest { WorkflowId = workflow, CreatedBefore = new Timestamp { Nanos = -1 } }, deadline: Deadline).ResponseAsync, StatusCode.InvalidArgument),
            "created_before");
        AssertViolation(await RefusedAsync(() => Client.CleanupCheckpointsAsync(
            new CleanupCheckpointsRequest { WorkflowId = workflow, OlderThan = badTime }, deadline: Deadline).ResponseAsync, StatusCode.InvalidArgument), "older_than");
        Assert.Equal(before, await env.CountCheckpointsAsync(workflow));
    }

    [Fact(Timeout = 120_000)]
    public async Task ListCheckpoints_pages_with_the_tokens_it_issued_and_refuses_every_other_token()
    {
        var workflow = NewWorkflow("pages");
        for (var i = 1; i <= 3; i++)
        {
            await Client.CreateCheckpointAsync(Create(workflow, SmallState(i)), deadline: Deadline);
        }
        var seen = new List<string>();
        var token = "";
        do
        {
            var page = await Client.ListCheckpointsAsync(new ListCheckpointsRequest { WorkflowId = workflow, PageSize = 1, PageToken = token }, deadline: Deadline);
            seen.AddRange(page.Checkpoints.Select(c => c.Id));
            token = page.NextPageToken;
        }
        while (token.Length > 0);
        Assert.Equal(3, seen.Distinct().Count());

        var issued = (await Client.ListCheckpointsAsync(new ListCheckpointsRequest { WorkflowId = workflow, PageSize = 1 }, deadline: Deadline)).NextPageToken;
        foreach (var bad in new[] { "AAAA", "////", "2", "9223372036854775807", issued[..^1], issued + "AA", new string('A', 100_000) })
        {
            var status = await RefusedAsync(() => Client.ListCheckpointsAsync(
                new ListCheckpointsRequest { WorkflowId = workflow, PageToken = bad }, deadline: Deadline).ResponseAsync, StatusCode.InvalidArgument);
            Assert.Equal("page_token", Assert.Single(status.BadRequest().FieldViolations).Field);
        }
    }

    private async Task AssertNothingWrittenAsync(string workflow)
    {
        Assert.Equal(0, await env.CountCheckpointsAsync(workflow));
        Assert.Equal(0, await env.CountWorkflowRowsAsync(workflow));
    }

    private static async Task<Google.Rpc.Status> RefusedSmallAndQuickAsync(Func<Task> call)
    {
        var (error, elapsed) = await Refusals.TimedAsync(call, StatusCode.InvalidArgument);
        Assert.True(elapsed < Quick, $"the refusal took {elapsed}");
        Assert.True(error.WireBytes() < SmallStatusBytes, $"the refusal took {error.WireBytes()} bytes of trailers");
        return error.GetRpcStatus()!;
    }
}
