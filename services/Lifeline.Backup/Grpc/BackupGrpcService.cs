using Grpc.Core;
using Lifeline.Backup.Catalog;
using Lifeline.Backup.Data;
using Lifeline.Backup.Engine;
using Lifeline.Backup.Restore;
using Lifeline.Backup.Retention;
using Lifeline.Backup.Scheduling;
using Lifeline.Backup.V1;
using Lifeline.ServiceDefaults.Paging;
using Lifeline.ServiceDefaults.Validation;
using Microsoft.EntityFrameworkCore;

using static Lifeline.ServiceDefaults.Protobuf.ProtoTime;

namespace Lifeline.Backup.Grpc;

/// <summary>The BackupService contract: validates, delegates to the domain classes, maps the result.</summary>
public sealed class BackupGrpcService(
    BackupRunner runner, BackupCatalog catalog, BackupVerifier verifier, RestoreRunner restorer, BackupPruner pruner,
    ScheduleStore schedules, IDbContextFactory<BackupDbContext> contexts) : BackupService.BackupServiceBase
{
    private const string BackupsListing = "backup.backups";

    public override async Task CreateBackup(CreateBackupRequest request, IServerStreamWriter<CreateBackupResponse> responseStream, ServerCallContext context)
    {
        var v = new Violations();
        var target = BackupValidation.Target(v, "target", request.Target);
        var type = BackupValidation.Type(v, "type", request.Type);
        v.ThrowIfAny();
        var sink = Sink(responseStream, p => new CreateBackupResponse { Progress = p }, context.CancellationToken);
        var backup = await runner.CreateAsync(target, type, sink.Report, context.CancellationToken);
        await sink.WriteAsync(new CreateBackupResponse { Backup = backup.ToProto() });
    }

    public override async Task<ListBackupsResponse> ListBackups(ListBackupsRequest request, ServerCallContext context)
    {
        var v = new Violations();
        var target = BackupValidation.Target(v, "target", request.Target, required: false);
        var type = BackupValidation.Type(v, "type", request.Type, required: false);
        string? status = null;
        if (request.Status != BackupStatus.Unspecified)
        {
            v.DefinedEnum("status", request.Status);
            status = Enum.IsDefined(request.Status) ? BackupMapper.StatusName(request.Status) : null;
        }
        var size = v.PageSize("page_size", request.PageSize, 50, 500);
        (DateTime At, Guid Id)? after = null;
        PageTokens.TryRead(v, request.PageToken, token =>
        {
            var ok = PageTokens.TryDecode(BackupsListing, token, out var at, out var id);
            after = ok ? (at, id) : null;
            return ok;
        });
        var from = v.Timestamp("started_after", request.StartedAfter);
        var until = v.Timestamp("started_before", request.StartedBefore);
        v.AddIf(from is not null && until is not null && from > until, "started_before", "must not be before started_after");
        v.ThrowIfAny();

        await using var db = await contexts.CreateDbContextAsync(context.CancellationToken);
        var query = db.Backups.AsNoTracking();
        if (target.Length > 0)
        {
            query = query.Where(b => b.Target == target);
        }
        if (type.Length > 0)
        {
            query = query.Where(b => b.Type == type);
        }
        if (status is not null)
        {
            query = query.Where(b => b.Status == status);
        }
        if (from is { } f)
        {
            query = query.Where(b => b.StartedAt >= f);
        }
        if (until is { } u)
        {
            query = query.Where(b => b.StartedAt < u);
        }
        if (after is { } a)
        {
            query = query.Where(b => b.StartedAt < a.At || (b.StartedAt == a.At && b.Id.CompareTo(a.Id) < 0));
        }
        var page = await query.OrderByDescending(b => b.StartedAt).ThenByDescending(b => b.Id).Take(size + 1).ToListAsync(context.CancellationToken);
        var response = new ListBackupsResponse();
        response.Backups.AddRange(page.Take(size).Select(b => b.ToProto()));
        if (page.Count > size)
        {
            var last = page[size - 1];
            response.NextPageToken = PageTokens.Encode(BackupsListing, last.StartedAt, last.Id);
        }
        return response;
    }

    public override async Task<GetBackupResponse> GetBackup(GetBackupRequest request, ServerCallContext context)
    {
        var id = BackupValidation.BackupId(request.BackupId);
        return new GetBackupResponse { Backup = (await catalog.GetAsync(id, context.CancellationToken)).ToProto() };
    }

    public override async Task VerifyBackup(VerifyBackupRequest request, IServerStreamWriter<VerifyBackupResponse> responseStream, ServerCallContext context)
    {
        var id = BackupValidation.BackupId(request.BackupId);
        var sink = Sink(responseStream, p => new VerifyBackupResponse { Progress = p }, context.CancellationToken);
        var backup = await verifier.VerifyAsync(id, sink.Report, context.CancellationToken);
        await sink.WriteAsync(new VerifyBackupResponse { Backup = backup.ToProto() });
    }

    public override async Task RestoreBackup(RestoreBackupRequest request, IServerStreamWriter<RestoreBackupResponse> responseStream, ServerCallContext context)
    {
        var v = new Violations();
        var target = BackupValidation.Target(v, "target", request.Target);
        var id = v.Uuid("backup_id", request.BackupId);
        v.ThrowIfAny();
        var sink = Sink(responseStream, p => new RestoreBackupResponse { Progress = p }, context.CancellationToken);
        var outcome = await restorer.RestoreAsync(target, id, request.PreRestoreBackup, sink.Report, context.CancellationToken);
        var result = new RestoreResult
        {
            RestoreId = outcome.Run.Id.ToString(),
            Target = outcome.Run.Target,
            BackupId = outcome.Run.BackupId.ToString(),
            PreRestoreBackupId = outcome.Run.PreRestoreBackupId?.ToString() ?? "",
            ReplacedDatabase = outcome.Run.ReplacedDatabase ?? "",
            StartedAt = Time(outcome.Run.StartedAt),
            CompletedAt = Time(outcome.Run.CompletedAt),
        };
        result.Tables.AddRange(outcome.Tables.Select(t => t.ToProto()));
        await sink.WriteAsync(new RestoreBackupResponse { Result = result });
    }

    public override async Task<DeleteBackupResponse> DeleteBackup(DeleteBackupRequest request, ServerCallContext context)
    {
        var id = BackupValidation.BackupId(request.BackupId);
        var deleted = await pruner.DeleteAsync(id, request.Cascade, context.CancellationToken);
        var response = new DeleteBackupResponse();
        response.DeletedBackupIds.AddRange(deleted.Select(d => d.ToString()));
        return response;
    }

    public override async Task<ApplyRetentionResponse> ApplyRetention(ApplyRetentionRequest request, ServerCallContext context)
    {
        var v = new Violations();
        var target = BackupValidation.Target(v, "target", request.Target, required: false);
        var rules = BackupValidation.Rules(v, request);
        v.ThrowIfAny();
        var outcome = await pruner.ApplyAsync(target.Length > 0 ? target : null, rules, request.DryRun, context.CancellationToken);
        var response = new ApplyRetentionResponse();
        response.DeletedBackupIds.AddRange(outcome.Deleted.Select(d => d.ToString()));
        response.ProtectedBackupIds.AddRange(outcome.Protected.Select(d => d.ToString()));
        return response;
    }

    public override async Task<SetScheduleResponse> SetSchedule(SetScheduleRequest request, ServerCallContext context)
    {
        var v = new Violations();
        var target = BackupValidation.Target(v, "target", request.Target);
        var type = BackupValidation.Type(v, "type", request.Type);
        var cron = BackupValidation.Cron(v, request.Cron);
        v.ThrowIfAny();
        var schedule = await schedules.SetAsync(target, type, cron, request.Cron.Trim(), context.CancellationToken);
        return new SetScheduleResponse { Schedule = schedule.ToProto() };
    }

    public override async Task<ListSchedulesResponse> ListSchedules(ListSchedulesRequest request, ServerCallContext context)
    {
        var v = new Violations();
        var target = BackupValidation.Target(v, "target", request.Target, required: false);
        v.ThrowIfAny();
        var response = new ListSchedulesResponse();
        response.Schedules.AddRange((await schedules.ListAsync(target.Length > 0 ? target : null, context.CancellationToken)).Select(s => s.ToProto()));
        return response;
    }

    public override async Task<DeleteScheduleResponse> DeleteSchedule(DeleteScheduleRequest request, ServerCallContext context)
    {
        var v = new Violations();
        var target = BackupValidation.Target(v, "target", request.Target);
        var type = BackupValidation.Type(v, "type", request.Type);
        v.ThrowIfAny();
        return new DeleteScheduleResponse { Deleted = await schedules.DeleteAsync(target, type, context.CancellationToken) };
    }

    private static StreamSink<T> Sink<T>(IServerStreamWriter<T> stream, Func<Progress, T> wrap, CancellationToken ct) => new(stream, wrap, ct);

    /// <summary>Serialises writes to a response stream: progress may come from a reporting task and the main flow.</summary>
    private sealed class StreamSink<T>(IServerStreamWriter<T> stream, Func<Progress, T> wrap, CancellationToken ct)
    {
        private readonly SemaphoreSlim _gate = new(1, 1);

        public Task Report(BackupProgress progress) => WriteAsync(wrap(progress.ToProto()));

        public async Task WriteAsync(T message)
        {
            await _gate.WaitAsync(ct);
            try
            {
                await stream.WriteAsync(message, ct);
            }
            finally
            {
                _gate.Release();
            }
        }
    }
}
