using System.Security.Cryptography;
using Lifeline.Backup.Options;
using Microsoft.Extensions.Options;

namespace Lifeline.Backup.Engine;

/// <summary>
/// The backup directory. Files are written as <c>&lt;name&gt;.partial</c> (mode 0600), flushed to disk and only
/// then renamed to their final name, so a file under its final name is always complete; a <c>.partial</c>
/// file is never read by a restore and is deleted by the startup sweep.
/// </summary>
public sealed class BackupFiles
{
    public const string PartialSuffix = ".partial";
    private const UnixFileMode FileMode0600 = UnixFileMode.UserRead | UnixFileMode.UserWrite;
    private const UnixFileMode DirMode0700 = UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute;

    public BackupFiles(IOptions<BackupOptions> options)
    {
        Root = Path.GetFullPath(options.Value.Directory);
        Directory.CreateDirectory(Root, DirMode0700);
    }

    public string Root { get; }

    /// <summary>Relative file name of a backup: <c>&lt;target&gt;/&lt;id&gt;.&lt;extension&gt;</c>.</summary>
    public static string FileNameOf(string target, Guid id, string extension) => $"{target}/{id:N}.{extension}";

    public string PathOf(string fileName) => Path.Combine(Root, fileName);

    /// <summary>Starts writing <paramref name="fileName"/> under its temporary name.</summary>
    public PartialFile Create(string fileName)
    {
        var path = PathOf(fileName);
        Directory.CreateDirectory(Path.GetDirectoryName(path)!, DirMode0700);
        return new PartialFile(path);
    }

    /// <summary>Every leftover temporary file (relative names without the suffix).</summary>
    public IEnumerable<string> PartialFiles() =>
        Directory.EnumerateFiles(Root, "*" + PartialSuffix, SearchOption.AllDirectories)
            .Select(p => Path.GetRelativePath(Root, p)[..^PartialSuffix.Length]);

    public void DeletePartial(string fileName) => DeleteIfThere(PathOf(fileName) + PartialSuffix);

    public void Delete(string fileName)
    {
        DeleteIfThere(PathOf(fileName));
        DeleteIfThere(PathOf(fileName) + PartialSuffix);
    }

    private static void DeleteIfThere(string path)
    {
        if (File.Exists(path))
        {
            File.Delete(path);
        }
    }

    /// <summary>Hex sha256 of a complete file, or null when it does not exist.</summary>
    public async Task<string?> Sha256Async(string fileName, CancellationToken ct)
    {
        var path = PathOf(fileName);
        if (!File.Exists(path))
        {
            return null;
        }
        await using var stream = new FileStream(path, System.IO.FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 20, useAsync: true);
        return Convert.ToHexStringLower(await SHA256.HashDataAsync(stream, ct));
    }

    /// <summary>A file being written: hashes and counts what passes through; <see cref="CompleteAsync"/> makes it final.</summary>
    public sealed class PartialFile : Stream
    {
        private readonly string _finalPath;
        private readonly FileStream _file;
        private readonly IncrementalHash _hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        private bool _done;

        internal PartialFile(string finalPath)
        {
            _finalPath = finalPath;
            _file = new FileStream(finalPath + PartialSuffix, new FileStreamOptions
            {
                Mode = System.IO.FileMode.Create,
                Access = FileAccess.Write,
                Share = FileShare.None,
                BufferSize = 1 << 20,
                Options = FileOptions.Asynchronous,
                UnixCreateMode = FileMode0600,
            });
        }

        /// <summary>Bytes written so far.</summary>
        public long BytesWritten { get; private set; }

        /// <summary>Flushes to disk, renames to the final name, returns size and hex sha256.</summary>
        public async Task<(long Size, string Sha256)> CompleteAsync(CancellationToken ct)
        {
            await _file.FlushAsync(ct);
            _file.Flush(flushToDisk: true);
            await _file.DisposeAsync();
            File.Move(_finalPath + PartialSuffix, _finalPath, overwrite: false);
            _done = true;
            return (BytesWritten, Convert.ToHexStringLower(_hash.GetHashAndReset()));
        }

        public override void Write(byte[] buffer, int offset, int count) => Write(buffer.AsSpan(offset, count));

        public override void Write(ReadOnlySpan<byte> buffer)
        {
            _hash.AppendData(buffer);
            _file.Write(buffer);
            BytesWritten += buffer.Length;
        }

        public override Task WriteAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
            WriteAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

        public override async ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default)
        {
            _hash.AppendData(buffer.Span);
            await _file.WriteAsync(buffer, cancellationToken);
            BytesWritten += buffer.Length;
        }

        public override void Flush()
        {
        }

        public override Task FlushAsync(CancellationToken cancellationToken) => Task.CompletedTask;

        public override bool CanRead => false;
        public override bool CanSeek => false;
        public override bool CanWrite => true;
        public override long Length => BytesWritten;
        public override long Position { get => BytesWritten; set => throw new NotSupportedException(); }
        public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();
        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public override void SetLength(long value) => throw new NotSupportedException();

        /// <summary>Disposing an unfinished file deletes it: an interrupted backup leaves nothing behind.</summary>
        protected override void Dispose(bool disposing)
        {
            if (disposing)
            {
                _hash.Dispose();
                if (!_done)
                {
                    _file.Dispose();
                    File.Delete(_finalPath + PartialSuffix);
                    _done = true;
                }
            }
            base.Dispose(disposing);
        }

        public override async ValueTask DisposeAsync()
        {
            if (!_done)
            {
                await _file.DisposeAsync();
            }
            Dispose(true);
            GC.SuppressFinalize(this);
        }
    }
}
