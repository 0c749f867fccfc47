using Grpc.Core;
using Lifeline.Checkpoint.V1;
using static Lifeline.Checkpoint.Tests.TestData;

namespace Lifeline.Checkpoint.Tests;

/// <summary>
/// Refused requests name the exact field (BadRequest) or the missing resource, and write nothing: each
/// case has a workflow of its own, so "no checkpoint row and no workflow row" proves it.
/// </summary>
public sealed class BadInputTests(CheckpointEnvironment env) : IClassFixture<CheckpointEnvironment>
{
    private CheckpointService.CheckpointServiceClient Client => env.Checkpoint.Checkpoints();

    private async Task AssertNothingWrittenAsync(string workflow)
    {
        Assert.Equal(0, await env.CountCheckpointsAsync(workflow));
        Assert.Equal(0, await env.CountWorkflowRowsAsync(workflow));
        Assert.Equal(0, await env.ScalarAsync<long>("SELECT count(*) FROM checkpoints WHERE workflow_id = @w", ("w", workflow)));
    }

    [Theory(Timeout = TestTimeouts.Default)]
    [InlineData("missing workflow_id", "workflow_id", false)]
    [InlineData("workflow_id with a space", "workflow_id", false)]
    [InlineData("workflow_id longer than 200", "workflow_id", false)]
    [InlineData("missing name", "name", false)]
    [InlineData("name longer than 200", "name", false)]
    [InlineData("unspecified type", "type", false)]
    [InlineData("undefined type 99", "type", false)]
    [InlineData("negative phase", "phase", false)]
    [InlineData("agent longer than 200", "agent", false)]
    [InlineData("description longer than 4096", "description", false)]
    [InlineData("33 tags", "tags", true)]
    [InlineData("empty tag", "tags", true)]
    [InlineData("tag longer than 64", "tags", true)]
    [InlineData("context is an array", "state.context", false)]
    [InlineData("context is a string", "state.context", false)]
    [InlineData("context is malformed", "state.context", false)]
    [InlineData("context is a number", "state.context", false)]
    [InlineData("agent state is an array", "state.agent_states[", true)]
    [InlineData("agent state is malformed", "state.agent_states[", true)]
    [InlineData("status longer than 64", "state.workflow.status", false)]
    [InlineData("duplicate artifact ids", "state.artifacts", true)]
    [InlineData("empty artifact id", "state.artifacts", true)]
    [InlineData("malformed parent_id", "parent_id", false)]
    public async Task An_invalid_checkpoint_is_refused_on_the_exact_field_and_writes_nothing(string @case, string field, bool prefix)
    {
        var workflow = NewWorkflow("bad");
        var request = Create(workflow, SmallState(1));
        switch (@case)
        {
            case "missing workflow_id": request.WorkflowId = ""; break;
            case "workflow_id with a space": request.WorkflowId = workflow + " x"; break;
            case "workflow_id longer than 200": request.WorkflowId = workflow + new string('w', 200); break;
            case "missing name": request.Name = ""; break;
            case "name longer than 200": request.Name = new string('n', 201); break;
            case "unspecified type": request.Type = CheckpointType.Unspecified; break;
            case "undefined type 99": request.Type = (CheckpointType)99; break;
            case "negative phase": request.Phase = -1; break;
            case "agent longer than 200": request.Agent = new string('a', 201); break;
            case "description longer than 4096": request.Description = new string('d', 4097); break;
            case "33 tags": request.Tags.Add(Enumerable.Range(0, 33).Select(i => $"t{i}")); break;
            case "empty tag": request.Tags.Add(["ok", ""]); break;
            case "tag longer than 64": request.Tags.Add(new string('t', 65)); break;
            case "context is an array": request.State.Context = "[1,2]"; break;
            case "context is a string": request.State.Context = "\"x\""; break;
            case "context is malformed": request.State.Context = "{bad"; break;
            case "context is a number": request.State.Context = "42"; break;
            case "agent state is an array": request.State.AgentStates["planner"] = "[1]"; break;
            case "agent state is malformed": request.State.AgentStates["planner"] = "{\"p\":"; break;
            case "status longer than 64": request.State.Workflow.Status = new string('s', 65); break;
            case "duplicate artifact ids": request.State.Artifacts.Add(Artifact("report", 9)); break;
            case "empty artifact id": request.State.Artifacts.Add(new ArtifactRef { Id = "", Version = 1 }); break;
            case "malformed parent_id": request.ParentId = "not-a-uuid"; break;
            default: throw new ArgumentOutOfRangeException(nameof(@case), @case, null);
        }

        var status = await RefusedAsync(() => Client.CreateCheckpointAsync(request).ResponseAsync, StatusCode.InvalidArgument);

        AssertViolation(status, field, prefix);
        if (@case.StartsWith("agent state", StringComparison.Ordinal))
        {
            Assert.Contains(status.BadRequest().FieldViolations, v => v.Field.StartsWith("state.agent_states[", StringComparison.Ordinal) && v.Field.Contains("planner", StringComparison.Ordinal));
        }
        await AssertNothingWrittenAsync(workflow);
        await AssertNothingWrittenAsync(request.WorkflowId);
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task Several_invalid_fields_are_reported_together()
    {
        var workflow = NewWorkflow("bad");
        var request = Create(workflow, SmallState(1));
        request.Name = "";
        request.Type = CheckpointType.Unspecified;
        request.State.Context = "[1,2]";

        var status = await RefusedAsync(() => Client.CreateCheckpointAsync(request).ResponseAsync, StatusCode.InvalidArgument);

        Assert.Equal(["name", "state.context", "type"], status.BadRequest().FieldViolations.Select(v => v.Field).Order(StringComparer.Ordinal));
        await AssertNothingWrittenAsync(workflow);
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task A_state_over_max_state_bytes_is_refused_on_the_state_and_one_under_it_is_saved()
    {
        await using var host = await env.StartCheckpointAsync(new Dictionary<string, string?> { ["Checkpoint:MaxStateBytes"] = (64 * 1024).ToString() });
        var client = host.Checkpoints();
        var workflow = NewWorkflow("big");
        var tooBig = new CheckpointState { Context = $$"""{"blob":"{{new string('x', 65 * 1024)}}"}""" };
        Assert.True(Canonical.Size(tooBig) > 64 * 1024);

        var status = await RefusedAsync(() => client.CreateCheckpointAsync(Create(workflow, tooBig)).ResponseAsync, StatusCode.InvalidArgument);

        AssertViolation(status, "state");
        await AssertNothingWrittenAsync(workflow);

        // Whitespace does not count: the canonical form is what is measured.
        var fits = new CheckpointState { Context = $$"""{"blob":"{{new string('x', 60 * 1024)}}"{{new string(' ', 10 * 1024)}}}""" };
        Assert.True(Canonical.Size(fits) <= 64 * 1024);
        var saved = await client.CreateAsync(workflow, fits);
        Assert.Equal(Canonical.Size(fits), saved.SizeBytes);
        Assert.Equal(1, await env.CountCheckpointsAsync(workflow));
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task Unknown_workflows_are_not_found_for_every_call_that_names_one()
    {
        var workflow = NewWorkflow("unknown");

        await RefusedAsync(() => Client.GetLatestCheckpointAsync(new GetLatestCheckpointRequest { WorkflowId = workflow }).ResponseAsync, StatusCode.NotFound);
        await RefusedAsync(() => Client.ListCheckpointsAsync(new ListCheckpointsRequest { WorkflowId = workflow }).ResponseAsync, StatusCode.NotFound);
        await RefusedAsync(() => Client.GetWorkflowAsync(new GetWorkflowRequest { WorkflowId = workflow }).ResponseAsync, StatusCode.NotFound);
        await RefusedAsync(() => Client.CleanupCheckpointsAsync(new CleanupCheckpointsRequest { WorkflowId = workflow, KeepLast = 1 }).ResponseAsync, StatusCode.NotFound);
        await RefusedAsync(() => Client.RollbackAsync(new RollbackRequest { WorkflowId = workflow, LatestValid = true }), StatusCode.NotFound);
        await RefusedAsync(() => Client.RollbackAsync(Rollback(workflow, Guid.NewGuid().ToString())), StatusCode.NotFound);
        await AssertNothingWrittenAsync(workflow);
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task Unknown_checkpoint_ids_are_not_found()
    {
        var id = Guid.NewGuid().ToString();
        var existing = await Client.CreateAsync(NewWorkflow("known"), SmallState(1));

        await RefusedAsync(() => Client.GetCheckpointAsync(new GetCheckpointRequest { CheckpointId = id }).ResponseAsync, StatusCode.NotFound);
        await RefusedAsync(() => Client.InvalidateCheckpointAsync(new InvalidateCheckpointRequest { CheckpointId = id, Reason = "x" }).ResponseAsync, StatusCode.NotFound);
        await RefusedAsync(() => Client.DeleteCheckpointAsync(new DeleteCheckpointRequest { CheckpointId = id }).ResponseAsync, StatusCode.NotFound);
        await RefusedAsync(() => Client.DiffCheckpointsAsync(new DiffCheckpointsRequest { FromCheckpointId = id, ToCheckpointId = existing.Id }).ResponseAsync, StatusCode.NotFound);
        await RefusedAsync(() => Client.DiffCheckpointsAsync(new DiffCheckpointsRequest { FromCheckpointId = existing.Id, ToCheckpointId = id }).ResponseAsync, StatusCode.NotFound);
        await RefusedAsync(() => Client.RollbackAsync(Rollback(existing.WorkflowId, id)), StatusCode.NotFound);
        Assert.Equal(1, await env.CountCheckpointsAsync(existing.WorkflowId));
    }

    [Theory(Timeout = TestTimeouts.Default)]
    [InlineData("get")]
    [InlineData("invalidate")]
    [InlineData("delete")]
    [InlineData("diff from")]
    [InlineData("diff to")]
    [InlineData("rollback")]
    public async Task A_malformed_checkpoint_id_is_invalid_argument_on_its_field(string call)
    {
        const string bad = "not-a-uuid";
        var existing = await Client.CreateAsync(NewWorkflow("uuid"), SmallState(1));
        var (refusal, field) = call switch
        {
            "get" => (RefusedAsync(() => Client.GetCheckpointAsync(new GetCheckpointRequest { CheckpointId = bad }).ResponseAsync, StatusCode.InvalidArgument), "checkpoint_id"),
            "invalidate" => (RefusedAsync(() => Client.InvalidateCheckpointAsync(new InvalidateCheckpointRequest { CheckpointId = bad, Reason = "x" }).ResponseAsync, StatusCode.InvalidArgument), "checkpoint_id"),
            "delete" => (RefusedAsync(() => Client.DeleteCheckpointAsync(new DeleteCheckpointRequest { CheckpointId = bad }).ResponseAsync, StatusCode.InvalidArgument), "checkpoint_id"),
            "diff from" => (RefusedAsync(() => Client.DiffCheckpointsAsync(new DiffCheckpointsRequest { FromCheckpointId = bad, ToCheckpointId = existing.Id }).ResponseAsync, StatusCode.InvalidArgument), "from_checkpoint_id"),
            "diff to" => (RefusedAsync(() => Client.DiffCheckpointsAsync(new DiffCheckpointsRequest { FromCheckpointId = existing.Id, ToCheckpointId = bad }).ResponseAsync, StatusCode.InvalidArgument), "to_checkpoint_id"),
            _ => (RefusedAsync(() => Client.RollbackAsync(Rollback(existing.WorkflowId, bad)), StatusCode.InvalidArgument), "checkpoint_id"),
        };

        AssertViolation(await refusal, field);
        Assert.Equal(1, await env.CountCheckpointsAsync(existing.WorkflowId));
        Assert.Equal(existing.Id, (await Client.WorkflowAsync(existing.WorkflowId)).HeadCheckpointId);
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task Malformed_rollback_requests_name_their_field_and_write_nothing()
    {
        var workflow = NewWorkflow("rbbad");
        var first = await Client.CreateAsync(workflow, SmallState(1));
        await Client.CreateAsync(workflow, SmallState(2));

        var noTarget = await RefusedAsync(() => Client.RollbackAsync(new RollbackRequest { WorkflowId = workflow }), StatusCode.InvalidArgument);
        Assert.NotEmpty(noTarget.BadRequest().FieldViolations);

        foreach (var strategy in new[] { RollbackStrategy.Partial, RollbackStrategy.Selective, RollbackStrategy.Incremental })
        {
            var noScope = await RefusedAsync(() => Client.RollbackAsync(Rollback(workflow, first.Id, strategy)), StatusCode.InvalidArgument);
            AssertViolation(noScope, "scope", prefix: true);
        }

        var badStrategy = await RefusedAsync(() => Client.RollbackAsync(Rollback(workflow, first.Id, (RollbackStrategy)42)), StatusCode.InvalidArgument);
        AssertViolation(badStrategy, "strategy");

        var noWorkflow = await RefusedAsync(() => Client.RollbackAsync(Rollback("", first.Id)), StatusCode.InvalidArgument);
        AssertViolation(noWorkflow, "workflow_id");

        Assert.Equal(2, await env.CountCheckpointsAsync(workflow));
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task Malformed_list_invalidate_and_diff_requests_name_their_field()
    {
        var workflow = NewWorkflow("misc");
        var first = await Client.CreateAsync(workflow, SmallState(1));
        var otherWorkflow = await Client.CreateAsync(NewWorkflow("misc2"), SmallState(1));

        AssertViolation(await RefusedAsync(() => Client.ListCheckpointsAsync(new ListCheckpointsRequest { WorkflowId = workflow, PageSize = 1001 }).ResponseAsync,
            StatusCode.InvalidArgument), "page_size");
        AssertViolation(await RefusedAsync(() => Client.ListCheckpointsAsync(new ListCheckpointsRequest { WorkflowId = workflow, PageToken = "garbage!" }).ResponseAsync,
            StatusCode.InvalidArgument), "page_token");
        AssertViolation(await RefusedAsync(() => Client.InvalidateCheckpointAsync(new InvalidateCheckpointRequest { CheckpointId = first.Id }).ResponseAsync,
            StatusCode.InvalidArgument), "reason");
        AssertViolation(await RefusedAsync(() => Client.DiffCheckpointsAsync(new DiffCheckpointsRequest { FromCheckpointId = first.Id, ToCheckpointId = otherWorkflow.Id }).ResponseAsync,
            StatusCode.InvalidArgument), "to_checkpoint_id");
        AssertViolation(await RefusedAsync(() => Client.CleanupCheckpointsAsync(new CleanupCheckpointsRequest { WorkflowId = workflow, KeepLast = -1 }).ResponseAsync,
            StatusCode.InvalidArgument), "keep_last");

        Assert.True((await Client.GetAsync(first.Id)).Metadata.IsValid);
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task An_identity_naming_a_malformed_tenant_is_unauthenticated_and_writes_nothing()
    {
        // Even signed with the suite's key: a tenant id that is not one is refused before anything runs.
        var workflow = NewWorkflow("tenant");
        var status = await RefusedAsync(
            () => env.Checkpoint.Checkpoints("Not A Tenant!").CreateCheckpointAsync(Create(workflow, SmallState(1))).ResponseAsync, StatusCode.Unauthenticated);
        Assert.Contains("tenant", status.Message, StringComparison.Ordinal);
        await AssertNothingWrittenAsync(workflow);
    }
}
