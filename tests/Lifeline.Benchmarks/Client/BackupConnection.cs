using Lifeline.Backup.V1;

namespace Lifeline.Benchmarks.Client;

/// <summary>The backup service's channel (see <see cref="ServiceConnection{TClient}"/>; backups are not tenant-scoped).</summary>
internal sealed class BackupConnection(Uri url)
    : ServiceConnection<BackupService.BackupServiceClient>(url, "default", invoker => new BackupService.BackupServiceClient(invoker))
{
    public BackupService.BackupServiceClient Backups => Client;
}
