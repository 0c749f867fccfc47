using Grpc.Core;
using Grpc.Reflection.V1Alpha;
using Lifeline.Checkpoint.V1;
using static Lifeline.Checkpoint.Tests.TestData;

namespace Lifeline.Checkpoint.Tests;

/// <summary>Saving and reading checkpoints: round trips, checksums, heads, listing, diffs, tenants, reflection.</summary>
public sealed class CheckpointApiTests(CheckpointEnvironment env) : IClassFixture<CheckpointEnvironment>
{
    private CheckpointService.CheckpointServiceClient Client => env.Checkpoint.Checkpoints();

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task Checkpoints_round_trip_with_canonical_checksums_sequences_parents_and_a_moving_head()
    {
        var workflow = NewWorkflow();
        var states = Enumerable.Range(1, 3).Select(SmallState).ToList();
        var created = new List<CheckpointMetadata>();
        for (var i = 0; i < states.Count; i++)
        {
            var request = Create(workflow, states[i], name: $"step {i + 1}", type: CheckpointType.Manual, phase: i + 1);
            request.Agent = "planner";
            request.Description = "after step " + (i + 1);
            request.Tags.Add("t" + (i + 1));
            request.Tags.Add("all");
            var metadata = (await Client.CreateCheckpointAsync(request)).Metadata;
            created.Add(metadata);

            Assert.True(Guid.TryParse(metadata.Id, out _));
            Assert.Equal(i + 1, metadata.Sequence);
            Assert.Equal(i == 0 ? "" : created[i - 1].Id, metadata.ParentId);
            Assert.Equal(Canonical.Checksum(states[i]), metadata.Checksum);
            Assert.Equal(Canonical.Size(states[i]), metadata.SizeBytes);
            Assert.Equal(workflow, metadata.WorkflowId);
            Assert.Equal($"step {i + 1}", metadata.Name);
            Assert.Equal(CheckpointType.Manual, metadata.Type);
            Assert.Equal(i + 1, metadata.Phase);
            Assert.Equal("planner", metadata.Agent);
            Assert.Equal("after step " + (i + 1), metadata.Description);
            Assert.Equal(["t" + (i + 1), "all"], metadata.Tags);
            Assert.True(metadata.IsValid);
            Assert.NotNull(metadata.CreatedAt);
            Assert.True(metadata.StoredBytes > 0);

            var summary = await Client.WorkflowAsync(workflow);
            Assert.Equal(metadata.Id, summary.HeadCheckpointId);
            Assert.Equal(i + 1, summary.HeadSequence);
            Assert.Equal(i + 1, summary.CheckpointCount);
        }

        for (var i = 0; i < states.Count; i++)
        {
            var checkpoint = await Client.GetAsync(created[i].Id);
            Assert.Equal(created[i], checkpoint.Metadata);
            AssertSameState(states[i], checkpoint.State);
            // What comes back is the canonical JSON itself.
            Assert.Equal(Canonical.Json(states[i].Context), checkpoint.State.Context);
        }

        // The store agrees: three rows with the same checksums, the workflow row names the last as head.
        var stored = await env.StoredAsync(workflow);
        Assert.Equal(created.Select(c => (c.Id, c.Sequence, c.ParentId, c.Checksum, c.StoredBytes, c.SizeBytes)),
            stored.Select(s => (s.Id, s.Sequence, s.ParentId, s.Checksum, s.StoredBytes, s.SizeBytes)));
        Assert.All(stored, s => Assert.Equal(s.StoredBytes, s.PayloadBytes));
        var row = await env.WorkflowRowAsync(workflow);
        Assert.Equal((Guid.Parse(created[2].Id), 3L, 3L), (row!.Value.HeadId, row.Value.HeadSequence, row.Value.CheckpointCount));

        var final = await Client.WorkflowAsync(workflow);
        Assert.Equal(created.Sum(c => c.StoredBytes), final.StoredBytes);
        Assert.Equal(created.Sum(c => c.SizeBytes), final.StateBytes);

        var latest = await Client.GetLatestCheckpointAsync(new GetLatestCheckpointRequest { WorkflowId = workflow });
        Assert.Equal(created[2].Id, latest.Checkpoint.Metadata.Id);
        Assert.Empty(latest.SkippedCorrupt);
        AssertSameState(states[2], latest.Checkpoint.State);
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task An_empty_context_is_the_empty_object_and_non_ascii_text_survives_the_round_trip()
    {
        var workflow = NewWorkflow();
        var empty = new CheckpointState();
        var first = await Client.CreateAsync(workflow, empty);
        Assert.Equal(Canonical.Checksum(empty), first.Checksum);
        var read = await Client.GetAsync(first.Id);
        Assert.Equal("{}", read.State.Context.Length == 0 ? "{}" : read.State.Context);

        var text = new CheckpointState
        {
            Context = """{"naïve":"héllo wörld ✓ <&>","quote":"a \"b\" \\ c","z":1.50,"a":-0,"big":12345678901234567890,"exp":1E+3}""",
            Workflow = new WorkflowState { Status = "läuft" },
        };
        text.AgentStates["агент"] = """{"x":"ÿ"}""";
        var second = await Client.CreateAsync(workflow, text);
        Assert.Equal(Canonical.Checksum(text), second.Checksum);
        Assert.Equal(Canonical.Size(text), second.SizeBytes);
        var back = (await Client.GetAsync(second.Id)).State;
        AssertSameState(text, back);
        Assert.Contains("\"z\":1.50", back.Context, StringComparison.Ordinal); // numbers as written
        Assert.Contains("\"exp\":1E+3", back.Context, StringComparison.Ordinal);
    }

    /// <summary>
    /// The canonical form is "UTF-8 JSON, object keys sorted by code point": a character outside the
    /// Basic Multilingual Plane is its UTF-8 bytes (not a \\uD83D\\uDE00 escape pair), and U+1F600 sorts
    /// after U+FF01 (UTF-16 code-unit order would put it first). Any client can then compute the checksum.
    /// </summary>
    [Fact(Timeout = TestTimeouts.Default)]
    public async Task The_canonical_form_sorts_keys_by_code_point_and_writes_characters_outside_the_bmp_as_utf8()
    {
        var workflow = NewWorkflow();
        var state = new CheckpointState { Context = """{"😀":"emoji key","！":"fullwidth","a":"😀"}""" };

        var created = await Client.CreateAsync(workflow, state);
        var back = (await Client.GetAsync(created.Id)).State;

        Assert.Equal("""{"a":"😀","！":"fullwidth","😀":"emoji key"}""", back.Context);
        Assert.Equal(Canonical.Checksum(state), created.Checksum);
        Assert.Equal(Canonical.Size(state), created.SizeBytes);
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task List_is_newest_first_pages_without_gaps_and_filters_by_type_tag_and_validity()
    {
        var workflow = NewWorkflow();
        var created = new List<CheckpointMetadata>();
        for (var i = 1; i <= 7; i++)
        {
            var request = Create(workflow, SmallState(i), type: i % 3 == 0 ? CheckpointType.Milestone : CheckpointType.Auto);
            request.Tags.Add(i % 2 == 0 ? "even" : "odd");
            created.Add((await Client.CreateCheckpointAsync(request)).Metadata);
        }
        await Client.InvalidateCheckpointAsync(new InvalidateCheckpointRequest { CheckpointId = created[1].Id, Reason = "bad step" });

        var seen = new List<string>();
        var token = "";
        var pages = 0;
        do
        {
            var page = await Client.ListCheckpointsAsync(new ListCheckpointsRequest { WorkflowId = workflow, PageSize = 3, PageToken = token });
            Assert.True(page.Checkpoints.Count <= 3);
            seen.AddRange(page.Checkpoints.Select(c => c.Id));
            token = page.NextPageToken;
            pages++;
        }
        while (token.Length > 0 && pages < 10);
        Assert.Equal(created.Select(c => c.Id).Reverse(), seen);

        var milestones = await Client.ListCheckpointsAsync(new ListCheckpointsRequest { WorkflowId = workflow, CheckpointTypes = { CheckpointType.Milestone } });
        Assert.Equal([created[5].Id, created[2].Id], milestones.Checkpoints.Select(c => c.Id));

        var even = await Client.ListCheckpointsAsync(new ListCheckpointsRequest { WorkflowId = workflow, Tags = { "even" } });
        Assert.Equal([created[5].Id, created[3].Id, created[1].Id], even.Checkpoints.Select(c => c.Id));

        var valid = await Client.ListCheckpointsAsync(new ListCheckpointsRequest { WorkflowId = workflow, ValidOnly = true });
        Assert.Equal(created.Where((_, i) => i != 1).Select(c => c.Id).Reverse(), valid.Checkpoints.Select(c => c.Id));

        var after = await Client.ListCheckpointsAsync(new ListCheckpointsRequest { WorkflowId = workflow, CreatedAfter = created[4].CreatedAt });
        Assert.Equal([created[6].Id, created[5].Id, created[4].Id], after.Checkpoints.Select(c => c.Id));
        var before = await Client.ListCheckpointsAsync(new ListCheckpointsRequest { WorkflowId = workflow, CreatedBefore = created[1].CreatedAt });
        Assert.Equal([created[0].Id], before.Checkpoints.Select(c => c.Id));
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task Diff_names_every_changed_part_with_before_and_after()
    {
        var workflow = NewWorkflow();
        var from = SmallState(1);
        from.Context = """{"keep":1,"change":"old","gone":true}""";
        var to = from.Clone();
        to.Context = """{"keep":1,"change":"new","added":[1,2]}""";
        to.Workflow.CurrentPhase = 2;
        to.Artifacts[0] = Artifact("report", 2);
        to.Artifacts.Add(Artifact("model", 1));
        to.AgentStates.Remove("coder");
        to.MessageBusState.LastProcessedId = "m-9";
        var a = await Client.CreateAsync(workflow, from);
        var b = await Client.CreateAsync(workflow, to);

        var diff = await Client.DiffCheckpointsAsync(new DiffCheckpointsRequest { FromCheckpointId = a.Id, ToCheckpointId = b.Id });
        var changes = diff.Changes.ToDictionary(c => c.Path);
        Assert.Equal(ChangeKind.Changed, changes["context.change"].Kind);
        Assert.Equal("\"old\"", changes["context.change"].Before);
        Assert.Equal("\"new\"", changes["context.change"].After);
        Assert.Equal(ChangeKind.Removed, changes["context.gone"].Kind);
        Assert.Equal("", changes["context.gone"].After);
        Assert.Equal(ChangeKind.Added, changes["context.added"].Kind);
        Assert.Equal("[1,2]", changes["context.added"].After);
        Assert.Equal("", changes["context.added"].Before);
        Assert.Equal(ChangeKind.Changed, changes["workflow.current_phase"].Kind);
        Assert.Equal(ChangeKind.Changed, changes["artifacts[report]"].Kind);
        Assert.Equal(ChangeKind.Added, changes["artifacts[model]"].Kind);
        Assert.Equal(ChangeKind.Removed, changes["agent_states.coder"].Kind);
        Assert.Equal(ChangeKind.Changed, changes["message_bus_state.last_processed_id"].Kind);
        Assert.DoesNotContain("context.keep", changes.Keys);
        Assert.DoesNotContain("agent_states.planner", changes.Keys);
        Assert.DoesNotContain("workflow.status", changes.Keys);
        Assert.Equal(Canonical.Size(from), diff.FromSizeBytes);
        Assert.Equal(Canonical.Size(to), diff.ToSizeBytes);

        // The same checkpoint against itself: nothing changed.
        var none = await Client.DiffCheckpointsAsync(new DiffCheckpointsRequest { FromCheckpointId = a.Id, ToCheckpointId = a.Id });
        Assert.Empty(none.Changes);
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task Invalidate_marks_the_checkpoint_in_the_store_and_is_idempotent()
    {
        var workflow = NewWorkflow();
        var first = await Client.CreateAsync(workflow, SmallState(1));
        await Client.CreateAsync(workflow, SmallState(2));

        var invalidated = (await Client.InvalidateCheckpointAsync(new InvalidateCheckpointRequest { CheckpointId = first.Id, Reason = "wrong output" })).Metadata;
        Assert.False(invalidated.IsValid);
        Assert.Equal("wrong output", invalidated.InvalidReason);
        Assert.False(await env.ScalarAsync<bool>("SELECT is_valid FROM checkpoints WHERE id = @id", ("id", Guid.Parse(first.Id))));
        Assert.Equal("wrong output", await env.ScalarAsync<string>("SELECT invalid_reason FROM checkpoints WHERE id = @id", ("id", Guid.Parse(first.Id))));

        var again = (await Client.InvalidateCheckpointAsync(new InvalidateCheckpointRequest { CheckpointId = first.Id, Reason = "wrong output" })).Metadata;
        Assert.False(again.IsValid);
        Assert.Equal(2, await env.CountCheckpointsAsync(workflow));
        var read = await Client.GetAsync(first.Id);
        Assert.False(read.Metadata.IsValid);
        AssertSameState(SmallState(1), read.State);
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task Another_tenants_checkpoints_and_workflows_are_not_found_and_untouched()
    {
        var workflow = NewWorkflow();
        var owner = NewTenant("own");
        var other = env.Checkpoint.Checkpoints(NewTenant("other"));
        var mine = env.Checkpoint.Checkpoints(owner);
        var first = await mine.CreateAsync(workflow, SmallState(1));
        var head = await mine.CreateAsync(workflow, SmallState(2));

        await RefusedAsync(() => other.GetCheckpointAsync(new GetCheckpointRequest { CheckpointId = first.Id }).ResponseAsync, StatusCode.NotFound);
        await RefusedAsync(() => other.GetLatestCheckpointAsync(new GetLatestCheckpointRequest { WorkflowId = workflow }).ResponseAsync, StatusCode.NotFound);
        await RefusedAsync(() => other.GetWorkflowAsync(new GetWorkflowRequest { WorkflowId = workflow }).ResponseAsync, StatusCode.NotFound);
        await RefusedAsync(() => other.InvalidateCheckpointAsync(new InvalidateCheckpointRequest { CheckpointId = first.Id, Reason = "x" }).ResponseAsync, StatusCode.NotFound);
        await RefusedAsync(() => other.DeleteCheckpointAsync(new DeleteCheckpointRequest { CheckpointId = first.Id }).ResponseAsync, StatusCode.NotFound);
        await RefusedAsync(() => other.DiffCheckpointsAsync(new DiffCheckpointsRequest { FromCheckpointId = first.Id, ToCheckpointId = head.Id }).ResponseAsync, StatusCode.NotFound);
        await RefusedAsync(() => other.RollbackAsync(Rollback(workflow, first.Id)), StatusCode.NotFound);

        // Nothing of the owner's changed.
        var stored = await env.StoredAsync(workflow, owner);
        Assert.Equal([first.Id, head.Id], stored.Select(s => s.Id));
        Assert.All(stored, s => Assert.True(s.IsValid));

        // The same workflow id in another tenant is another workflow.
        var otherTenant = NewTenant("other");
        var theirs = await env.Checkpoint.Checkpoints(otherTenant).CreateAsync(workflow, SmallState(9));
        Assert.Equal(1, theirs.Sequence);
        Assert.Equal("", theirs.ParentId);
        Assert.Equal(2, await env.CountCheckpointsAsync(workflow, owner));
        Assert.Equal(1, await env.CountCheckpointsAsync(workflow, otherTenant));
        Assert.Equal(head.Id, (await mine.WorkflowAsync(workflow)).HeadCheckpointId);
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task Reflection_lists_the_checkpoint_service_and_describes_it()
    {
        var client = new ServerReflection.ServerReflectionClient(env.Checkpoint.Channel);
        using var call = client.ServerReflectionInfo();
        await call.RequestStream.WriteAsync(new ServerReflectionRequest { ListServices = "" });
        Assert.True(await call.ResponseStream.MoveNext());
        var services = call.ResponseStream.Current.ListServicesResponse.Service.Select(s => s.Name).ToList();
        Assert.Contains("lifeline.checkpoint.v1.CheckpointService", services);
        Assert.Contains("grpc.health.v1.Health", services);

        await call.RequestStream.WriteAsync(new ServerReflectionRequest { FileContainingSymbol = "lifeline.checkpoint.v1.CheckpointService" });
        Assert.True(await call.ResponseStream.MoveNext());
        var files = call.ResponseStream.Current.FileDescriptorResponse.FileDescriptorProto
            .Select(bytes => Google.Protobuf.Reflection.FileDescriptorProto.Parser.ParseFrom(bytes)).ToList();
        Assert.Contains(files, f => f.Name.EndsWith("checkpoint.proto", StringComparison.Ordinal) && f.Service.Any(s => s.Name == "CheckpointService"));
        await call.RequestStream.CompleteAsync();
    }
}
