using Grpc.Core;
using Lifeline.Checkpoint.Artifacts;
using Lifeline.Checkpoint.Checkpoints;
using Lifeline.Checkpoint.Options;
using Lifeline.Checkpoint.Rollbacks;
using Lifeline.Checkpoint.V1;
using Lifeline.ServiceDefaults.Errors;
using Lifeline.ServiceDefaults.Tenancy;
using Lifeline.ServiceDefaults.Validation;
using Microsoft.Extensions.Options;

namespace Lifeline.Checkpoint.Grpc;

/// <summary>The CheckpointService contract: validates, delegates to the domain classes, maps the result.</summary>
public sealed class CheckpointGrpcService(
    CheckpointWriter writer, CheckpointReader reader, CheckpointPruner pruner, RollbackRunner rollbacks, ArtifactStore artifacts,
    IOptions<CheckpointOptions> options) : CheckpointService.CheckpointServiceBase
{
    public override async Task<CreateCheckpointResponse> CreateCheckpoint(CreateCheckpointRequest request, ServerCallContext context)
    {
        var (spec, canonical) = CheckpointValidation.Create(request, options.Value.MaxStateBytes);
        var record = await writer.CreateAsync(Tenant.From(context), spec, canonical, context.CancellationToken);
        return new CreateCheckpointResponse { Metadata = record.ToProto() };
    }

    public override async Task<GetCheckpointResponse> GetCheckpoint(GetCheckpointRequest request, ServerCallContext context)
    {
        var id = CheckpointValidation.CheckpointId(request.CheckpointId);
        var (record, canonical) = await reader.GetAsync(Tenant.From(context), id, context.CancellationToken);
        return new GetCheckpointResponse { Checkpoint = record.ToProto(canonical) };
    }

    public override async Task<GetLatestCheckpointResponse> GetLatestCheckpoint(GetLatestCheckpointRequest request, ServerCallContext context)
    {
        var workflowId = CheckpointValidation.WorkflowId(request.WorkflowId);
        var (record, canonical, skipped) = await reader.GetLatestAsync(Tenant.From(context), workflowId, context.CancellationToken);
        var response = new GetLatestCheckpointResponse { Checkpoint = record.ToProto(canonical) };
        response.SkippedCorrupt.AddRange(skipped.Select(s => new V1.SkippedCheckpoint { CheckpointId = s.Id.ToString(), Sequence = s.Sequence, Reason = s.Reason }));
        return response;
    }

    public override async Task<ListCheckpointsResponse> ListCheckpoints(ListCheckpointsRequest request, ServerCallContext context)
    {
        var filter = CheckpointValidation.List(request);
        var page = await reader.ListAsync(Tenant.From(context), request.WorkflowId, filter, context.CancellationToken);
        var response = new ListCheckpointsResponse();
        response.Checkpoints.AddRange(page.Select(c => c.ToProto()));
        if (page.Count == filter.PageSize)
        {
            response.NextPageToken = ServiceDefaults.Paging.PageTokens.Encode(CheckpointValidation.CheckpointsListing, page[^1].Sequence);
        }
        return response;
    }

    public override async Task<GetWorkflowResponse> GetWorkflow(GetWorkflowRequest request, ServerCallContext context)
    {
        var workflowId = CheckpointValidation.WorkflowId(request.WorkflowId);
        return new GetWorkflowResponse { Workflow = (await reader.GetWorkflowAsync(Tenant.From(context), workflowId, context.CancellationToken)).ToProto() };
    }

    public override async Task<InvalidateCheckpointResponse> InvalidateCheckpoint(InvalidateCheckpointRequest request, ServerCallContext context)
    {
        var (id, reason) = CheckpointValidation.Invalidate(request);
        return new InvalidateCheckpointResponse { Metadata = (await pruner.InvalidateAsync(Tenant.From(context), id, reason, context.CancellationToken)).ToProto() };
    }

    public override async Task<DeleteCheckpointResponse> DeleteCheckpoint(DeleteCheckpointRequest request, ServerCallContext context)
    {
        var id = CheckpointValidation.CheckpointId(request.CheckpointId);
        var result = await pruner.DeleteAsync(Tenant.From(context), id, context.CancellationToken);
        var response = new DeleteCheckpointResponse();
        response.ReparentedIds.AddRange(result.Reparented.Select(x => x.ToString()));
        response.RewrittenIds.AddRange(result.Rewritten.Select(x => x.ToString()));
        return response;
    }

    public override async Task<CleanupCheckpointsResponse> CleanupCheckpoints(CleanupCheckpointsRequest request, ServerCallContext context)
    {
        var rules = CheckpointValidation.Cleanup(request);
        var result = await pruner.CleanupAsync(Tenant.From(context), request.WorkflowId, rules, context.CancellationToken);
        var response = new CleanupCheckpointsResponse { RemovedCount = result.Removed.Count, FreedBytes = result.FreedBytes };
        response.RemovedIds.AddRange(result.Removed.Select(x => x.ToString()));
        response.RewrittenIds.AddRange(result.Rewritten.Select(x => x.ToString()));
        return response;
    }

    public override async Task<DiffCheckpointsResponse> DiffCheckpoints(DiffCheckpointsRequest request, ServerCallContext context)
    {
        var (fromId, toId) = CheckpointValidation.Diff(request);
        var tenant = Tenant.From(context);
        var (from, fromState) = await reader.GetAsync(tenant, fromId, context.CancellationToken);
        var (to, toState) = await reader.GetAsync(tenant, toId, context.CancellationToken);
        if (from.WorkflowId != to.WorkflowId)
        {
            throw ValidationException.For("to_checkpoint_id", $"belongs to workflow '{to.WorkflowId}', not '{from.WorkflowId}'");
        }
        var response = new DiffCheckpointsResponse { FromSizeBytes = from.SizeBytes, ToSizeBytes = to.SizeBytes };
        response.Changes.AddRange(StateDiff.Compare(Storage.CanonicalState.Deserialize(fromState), Storage.CanonicalState.Deserialize(toState))
            .Select(d => d.ToProto()));
        return response;
    }

    public override async Task Rollback(RollbackRequest request, IServerStreamWriter<RollbackResponse> responseStream, ServerCallContext context)
    {
        var command = CheckpointValidation.Rollback(request, options.Value.DefaultRollbackTimeout);
        var outcome = await rollbacks.RunAsync(Tenant.From(context), command,
            (phase, percent, message) => responseStream.WriteAsync(
                new RollbackResponse { Progress = new RollbackProgress { Phase = phase, Percent = percent, Message = message } }, context.CancellationToken),
            context.CancellationToken);
        await responseStream.WriteAsync(new RollbackResponse { Result = outcome.ToProto() }, context.CancellationToken);
    }

    public override async Task<PutArtifactResponse> PutArtifact(IAsyncStreamReader<PutArtifactRequest> requestStream, ServerCallContext context)
    {
        var ct = context.CancellationToken;
        if (!await requestStream.MoveNext(ct) || requestStream.Current.PartCase != PutArtifactRequest.PartOneofCase.Header)
        {
            throw ValidationException.For("header", "the first message must carry the header");
        }
        var header = requestStream.Current.Header;
        var v = new Violations();
        v.Text("header.name", header.Name, 200);
        v.Text("header.content_type", header.ContentType, 200);
        v.AddIf(header.ExpectedSha256.Length > 0 && !System.Text.RegularExpressions.Regex.IsMatch(header.ExpectedSha256, "^[0-9a-f]{64}$"),
            "header.expected_sha256", "must be a SHA-256 as 64 lowercase hex digits");
        v.ThrowIfAny();
        var upload = new ArtifactStore.Upload(header.Name, header.ContentType, header.ExpectedSha256.Length > 0 ? header.ExpectedSha256 : null);
        var (artifact, deduplicated) = await artifacts.PutAsync(Tenant.From(context), upload, Chunks(requestStream, ct), ct);
        return new PutArtifactResponse { Artifact = artifact.ToProto(), Deduplicated = deduplicated };
    }

    public override async Task GetArtifact(GetArtifactRequest request, IServerStreamWriter<GetArtifactResponse> responseStream, ServerCallContext context)
    {
        var sha = CheckpointValidation.Sha256(request.Sha256);
        var tenant = Tenant.From(context);
        var info = await artifacts.GetInfoAsync(tenant, sha, context.CancellationToken);
        await responseStream.WriteAsync(new GetArtifactResponse { Info = info.ToProto() }, context.CancellationToken);
        await foreach (var chunk in artifacts.ReadAsync(tenant, sha, context.CancellationToken))
        {
            await responseStream.WriteAsync(new GetArtifactResponse { Chunk = Google.Protobuf.UnsafeByteOperations.UnsafeWrap(chunk) }, context.CancellationToken);
        }
    }

    private const int MaxChunkBytes = 4 * 1024 * 1024;

    private static async IAsyncEnumerable<ReadOnlyMemory<byte>> Chunks(IAsyncStreamReader<PutArtifactRequest> stream,
        [System.Runtime.CompilerServices.EnumeratorCancellation] CancellationToken ct)
    {
        while (await stream.MoveNext(ct))
        {
            if (stream.Current.PartCase != PutArtifactRequest.PartOneofCase.Chunk)
            {
                throw ValidationException.For("chunk", "only the first message may carry a header; the following ones carry chunks");
            }
            if (stream.Current.Chunk.Length is 0 or > MaxChunkBytes)
            {
                throw ValidationException.For("chunk", $"must be 1 byte to 4 MiB; got {stream.Current.Chunk.Length} bytes");
            }
            yield return stream.Current.Chunk.Memory;
        }
    }
}
