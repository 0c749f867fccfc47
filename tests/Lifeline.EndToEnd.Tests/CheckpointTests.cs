using System.Net;
using System.Text.Json.Nodes;
using Grpc.Core;
using Lifeline.Checkpoint.V1;
using Lifeline.EndToEnd.Tests.Suite;

namespace Lifeline.EndToEnd.Tests;

/// <summary>The checkpoint walk-through of services/Lifeline.Checkpoint/README.md, through the gateway of the apphost-started suite.</summary>
[Collection(SuiteCollection.Name)]
public sealed class CheckpointTests(SuiteFixture suite)
{
    [Fact(Timeout = TestTimeouts.Default)]
    public async Task Worker_saves_checkpoints_operator_dry_runs_then_rolls_back_and_rest_reads_the_new_head()
    {
        var workflow = $"e2e-invoices-{Guid.NewGuid():N}";
        var worker = suite.Checkpoints(Keys.DefaultWorker);
        var first = (await worker.CreateCheckpointAsync(new CreateCheckpointRequest
        {
            WorkflowId = workflow, Name = "phase 2 start", Type = CheckpointType.PhaseStart, Phase = 2,
            State = new CheckpointState { Workflow = new WorkflowState { CurrentPhase = 2, Status = "running" }, Context = """{"cursor":"2026-11-01","done":1200}""" },
        })).Metadata;
        var second = (await worker.CreateCheckpointAsync(new CreateCheckpointRequest
        {
            WorkflowId = workflow, Name = "step 4", Type = CheckpointType.Auto, Phase = 2, ParentId = first.Id,
            State = new CheckpointState { Workflow = new WorkflowState { CurrentPhase = 2, Status = "running" }, Context = """{"cursor":"2026-11-09","done":1900}""" },
        })).Metadata;
        Assert.Equal(first.Id, second.ParentId);

        // A worker may not roll back: an operator decision.
        var refused = await Assert.ThrowsAsync<RpcException>(() => ReadAllAsync(worker.Rollback(new RollbackRequest { WorkflowId = workflow, PhaseStart = 2, DryRun = true })));
        Assert.Equal(StatusCode.PermissionDenied, refused.StatusCode);

        var operatorClient = suite.Checkpoints(Keys.DefaultOperator);
        var dryRun = await ReadAllAsync(operatorClient.Rollback(new RollbackRequest
        {
            WorkflowId = workflow, PhaseStart = 2, Strategy = RollbackStrategy.Selective,
            Scope = new RollbackScope { Context = new ItemSelection { Keys = { "cursor" } } }, DryRun = true,
        }));
        var dryResult = dryRun[^1].Result;
        Assert.True(dryResult.DryRun);
        Assert.Equal("cursor", Assert.Single(dryResult.Items).Key);
        Assert.Equal(second.Id, (await worker.GetLatestCheckpointAsync(new GetLatestCheckpointRequest { WorkflowId = workflow })).Checkpoint.Metadata.Id);

        var rollback = await ReadAllAsync(operatorClient.Rollback(new RollbackRequest
        {
            WorkflowId = workflow, CheckpointId = first.Id, Strategy = RollbackStrategy.Full, CreateBackup = true,
        }));
        Assert.Equal(
            [RollbackPhase.Validating, RollbackPhase.Backup, RollbackPhase.Rollback, RollbackPhase.Verify, RollbackPhase.Complete],
            rollback.Where(r => r.EventCase == RollbackResponse.EventOneofCase.Progress).Select(r => r.Progress.Phase).Distinct());
        var result = rollback[^1].Result;
        Assert.True(result.Verified);
        Assert.NotEmpty(result.BackupCheckpointId);

        using var response = await suite.RestAsync(HttpMethod.Get, $"/api/v1/workflows/{workflow}/checkpoints:latest", Keys.DefaultReader);
        var text = await response.Content.ReadAsStringAsync();
        Assert.True(response.StatusCode == HttpStatusCode.OK, text);
        var latest = JsonNode.Parse(text)!["checkpoint"]!;
        Assert.Equal(result.NewHeadId, latest["metadata"]!["id"]!.GetValue<string>());
        Assert.Equal(first.Checksum, latest["metadata"]!["checksum"]!.GetValue<string>());
        Assert.True(SuiteCalls.SameJson("""{"cursor":"2026-11-01","done":1200}""", latest["state"]!["context"]!.GetValue<string>()));
    }

    private static async Task<List<RollbackResponse>> ReadAllAsync(AsyncServerStreamingCall<RollbackResponse> call)
    {
        using (call)
        {
            var all = new List<RollbackResponse>();
            await foreach (var message in call.ResponseStream.ReadAllAsync())
            {
                all.Add(message);
            }
            return all;
        }
    }
}
