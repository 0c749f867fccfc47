using System.Text;
using System.Text.Json;
using Google.Protobuf;
using Google.Rpc;
using Grpc.Core;
using Lifeline.Checkpoint.V1;

namespace Lifeline.Checkpoint.Tests;

internal static class TestData
{
    public static string NewWorkflow(string prefix = "wf") => $"{prefix}-{Guid.NewGuid():N}";

    public static string NewTenant(string prefix = "t") => $"{prefix}-{Guid.NewGuid():N}"[..24];

    /// <summary>A small state touching every part, varied by <paramref name="n"/>.</summary>
    public static CheckpointState SmallState(int n)
    {
        var state = new CheckpointState
        {
            Workflow = new WorkflowState { CurrentPhase = n, Status = n % 2 == 0 ? "running" : "waiting" },
            Context = $$"""{ "step": {{n}}, "note": "state {{n}}", "nested": { "b": [1, 2.50, 1e3], "a": true, "c": null } }""",
            MessageBusState = new MessageBusState { LastProcessedId = $"m-{n}" },
        };
        state.Workflow.CompletedPhases.AddRange(Enumerable.Range(1, Math.Max(0, n - 1)));
        state.MessageBusState.PendingMessages.Add($$"""{"id":"m-{{n + 1}}"}""");
        state.AgentStates["planner"] = $$"""{"plan": ["a", "b"], "round": {{n}}}""";
        state.AgentStates["coder"] = """{ "files" : [ "a.cs" ] }""";
        state.Artifacts.Add(Artifact("report", n));
        return state;
    }

    public static ArtifactRef Artifact(string id, int version)
    {
        var checksum = Canonical.Sha256Hex(Encoding.UTF8.GetBytes($"{id}:{version}"));
        return new ArtifactRef
        {
            Id = id, Type = "report", Name = $"{id}.pdf", Version = version, Checksum = checksum, Size = 100 + version, Ref = $"artifact:{checksum}",
        };
    }

    /// <summary>A context of <paramref name="keys"/> random string values of <paramref name="valueLength"/> characters (~keys × valueLength bytes).</summary>
    public static Dictionary<string, string> LargeContext(Random random, int keys = 1024, int valueLength = 240)
    {
        var context = new Dictionary<string, string>(keys);
        for (var i = 0; i < keys; i++)
        {
            context[$"k{i:D5}"] = RandomText(random, valueLength);
        }
        return context;
    }

    /// <summary>Changes <paramref name="fraction"/> of the values (at least one).</summary>
    public static void Mutate(Random random, Dictionary<string, string> context, double fraction = 0.01)
    {
        var keys = context.Keys.ToArray();
        var count = Math.Max(1, (int)(keys.Length * fraction));
        for (var i = 0; i < count; i++)
        {
            var key = keys[random.Next(keys.Length)];
            context[key] = RandomText(random, context[key].Length);
        }
    }

    public static string RandomText(Random random, int length)
    {
        const string alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
        return string.Create(length, random, (span, r) =>
        {
            for (var i = 0; i < span.Length; i++)
            {
                span[i] = alphabet[r.Next(alphabet.Length)];
            }
        });
    }

    public static CheckpointState StateWithContext(Dictionary<string, string> context, int phase = 1)
    {
        var state = new CheckpointState
        {
            Workflow = new WorkflowState { CurrentPhase = phase, Status = "running" },
            Context = JsonSerializer.Serialize(context),
            MessageBusState = new MessageBusState { LastProcessedId = "m-1" },
        };
        state.AgentStates["worker"] = """{"ok":true}""";
        return state;
    }

    public static CreateCheckpointRequest Create(string workflowId, CheckpointState state, string? name = null, CheckpointType type = CheckpointType.Auto,
        int phase = 0, string parentId = "") => new()
    {
        WorkflowId = workflowId,
        Name = name ?? "step",
        Type = type,
        Phase = phase,
        State = state,
        ParentId = parentId,
    };

    public static async Task<CheckpointMetadata> CreateAsync(this CheckpointService.CheckpointServiceClient client, string workflowId, CheckpointState state,
        string? name = null, CheckpointType type = CheckpointType.Auto, int phase = 0, string parentId = "") =>
        (await client.CreateCheckpointAsync(Create(workflowId, state, name, type, phase, parentId))).Metadata;

    public static async Task<Lifeline.Checkpoint.V1.Checkpoint> GetAsync(this CheckpointService.CheckpointServiceClient client, string id) =>
        (await client.GetCheckpointAsync(new GetCheckpointRequest { CheckpointId = id })).Checkpoint;

    public static async Task<WorkflowSummary> WorkflowAsync(this CheckpointService.CheckpointServiceClient client, string workflowId) =>
        (await client.GetWorkflowAsync(new GetWorkflowRequest { WorkflowId = workflowId })).Workflow;

    /// <summary>Asserts a returned state is the sent one: parts equal, JSON parts equal as JSON (canonical texts).</summary>
    public static void AssertSameState(CheckpointState expected, CheckpointState actual)
    {
        Assert.Equal(expected.Workflow ?? new WorkflowState(), actual.Workflow ?? new WorkflowState());
        Assert.Equal(expected.Artifacts, actual.Artifacts);
        Assert.Equal(expected.MessageBusState ?? new MessageBusState(), actual.MessageBusState ?? new MessageBusState());
        Assert.Equal(Canonical.Json(expected.Context.Length == 0 ? "{}" : expected.Context), Canonical.Json(actual.Context.Length == 0 ? "{}" : actual.Context));
        Assert.Equal(expected.AgentStates.Keys.Order(), actual.AgentStates.Keys.Order());
        foreach (var (name, value) in expected.AgentStates)
        {
            Assert.Equal(Canonical.Json(value), Canonical.Json(actual.AgentStates[name]));
        }
        Assert.Equal(Canonical.Checksum(expected), Canonical.Checksum(actual));
    }

    public static async Task<Google.Rpc.Status> RefusedAsync<T>(Func<Task<T>> call, StatusCode code)
    {
        var ex = await Assert.ThrowsAsync<RpcException>(call);
        Assert.True(code == ex.StatusCode, $"expected {code}, got {ex.StatusCode}: {ex.Status.Detail}");
        return ex.GetRpcStatus() ?? new Google.Rpc.Status { Code = (int)ex.StatusCode, Message = ex.Status.Detail };
    }

    public static async Task<Google.Rpc.Status> RefusedAsync(Func<Task> call, StatusCode code)
    {
        var ex = await Assert.ThrowsAsync<RpcException>(call);
        Assert.True(code == ex.StatusCode, $"expected {code}, got {ex.StatusCode}: {ex.Status.Detail}");
        return ex.GetRpcStatus() ?? new Google.Rpc.Status { Code = (int)ex.StatusCode, Message = ex.Status.Detail };
    }

    public static ErrorInfo ErrorInfo(this Google.Rpc.Status status) =>
        status.GetDetail<ErrorInfo>() ?? throw new Xunit.Sdk.XunitException($"no ErrorInfo in status {status}");

    public static BadRequest BadRequest(this Google.Rpc.Status status) =>
        status.GetDetail<BadRequest>() ?? throw new Xunit.Sdk.XunitException($"no BadRequest in status {status}");

    /// <summary>Asserts a BadRequest naming <paramref name="field"/> (exactly, or as a prefix when <paramref name="prefix"/>).</summary>
    public static void AssertViolation(Google.Rpc.Status status, string field, bool prefix = false)
    {
        var fields = status.BadRequest().FieldViolations.Select(v => v.Field).ToList();
        Assert.True(prefix ? fields.Any(f => f.StartsWith(field, StringComparison.Ordinal)) : fields.Contains(field),
            $"expected a violation of '{field}'{(prefix ? "…" : "")}, got [{string.Join(", ", fields)}] ({status.Message})");
        Assert.Equal("INVALID_ARGUMENT", status.ErrorInfo().Reason);
    }

    /// <summary>Runs a rollback to its end: the progress events in order and the result.</summary>
    public static async Task<(List<RollbackProgress> Progress, RollbackResult Result)> RollbackAsync(
        this CheckpointService.CheckpointServiceClient client, RollbackRequest request)
    {
        using var call = client.Rollback(request);
        var progress = new List<RollbackProgress>();
        RollbackResult? result = null;
        await foreach (var message in call.ResponseStream.ReadAllAsync())
        {
            Assert.Null(result); // nothing follows the result
            if (message.EventCase == RollbackResponse.EventOneofCase.Progress)
            {
                progress.Add(message.Progress);
            }
            else if (message.EventCase == RollbackResponse.EventOneofCase.Result)
            {
                result = message.Result;
            }
        }
        Assert.NotNull(result);
        return (progress, result!);
    }

    public static RollbackRequest Rollback(string workflowId, string checkpointId, RollbackStrategy strategy = RollbackStrategy.Full, RollbackScope? scope = null) =>
        new() { WorkflowId = workflowId, CheckpointId = checkpointId, Strategy = strategy, Scope = scope };

    public static async Task<PutArtifactResponse> PutArtifactAsync(this CheckpointService.CheckpointServiceClient client, byte[] bytes, int chunkBytes,
        string name = "blob.bin", string contentType = "application/octet-stream", string expectedSha256 = "")
    {
        using var call = client.PutArtifact();
        await call.RequestStream.WriteAsync(new PutArtifactRequest
        {
            Header = new ArtifactHeader { Name = name, ContentType = contentType, ExpectedSha256 = expectedSha256 },
        });
        for (var offset = 0; offset < bytes.Length; offset += chunkBytes)
        {
            await call.RequestStream.WriteAsync(new PutArtifactRequest
            {
                Chunk = ByteString.CopyFrom(bytes, offset, Math.Min(chunkBytes, bytes.Length - offset)),
            });
        }
        await call.RequestStream.CompleteAsync();
        return await call.ResponseAsync;
    }

    /// <summary>Downloads an artifact: its info, its bytes and the sizes of the chunks they came in.</summary>
    public static async Task<(ArtifactInfo Info, byte[] Bytes, List<int> Chunks)> GetArtifactAsync(this CheckpointService.CheckpointServiceClient client, string sha256)
    {
        using var call = client.GetArtifact(new GetArtifactRequest { Sha256 = sha256 });
        ArtifactInfo? info = null;
        var bytes = new MemoryStream();
        var chunks = new List<int>();
        await foreach (var message in call.ResponseStream.ReadAllAsync())
        {
            if (message.PartCase == GetArtifactResponse.PartOneofCase.Info)
            {
                Assert.Null(info);
                Assert.Empty(chunks); // info comes first
                info = message.Info;
            }
            else
            {
                Assert.NotNull(info);
                message.Chunk.WriteTo(bytes);
                chunks.Add(message.Chunk.Length);
            }
        }
        Assert.NotNull(info);
        return (info!, bytes.ToArray(), chunks);
    }

    public static byte[] RandomBytes(int length, int seed)
    {
        var bytes = new byte[length];
        new Random(seed).NextBytes(bytes);
        return bytes;
    }

    /// <summary>Polls until <paramref name="condition"/> holds or the timeout passes.</summary>
    public static async Task<bool> EventuallyAsync(Func<Task<bool>> condition, TimeSpan timeout)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (DateTime.UtcNow < deadline)
        {
            if (await condition())
            {
                return true;
            }
            await Task.Delay(100);
        }
        return await condition();
    }
}
