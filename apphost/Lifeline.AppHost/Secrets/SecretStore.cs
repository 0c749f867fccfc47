using System.Security.Cryptography;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace Lifeline.AppHost.Secrets;

/// <summary>
/// Passwords generated on first use and kept in <c>.lifeline/secrets.json</c> (mode 0600), so the cluster's
/// superuser and each service role keep the same password across runs.
/// </summary>
internal sealed class SecretStore
{
    private const string Alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    private const UnixFileMode OwnerOnly = UnixFileMode.UserRead | UnixFileMode.UserWrite;

    private readonly string _path;
    private readonly SecretsDocument _document;

    private SecretStore(string path, SecretsDocument document)
    {
        _path = path;
        _document = document;
    }

    public static SecretStore Open(string path)
    {
        if (!File.Exists(path))
        {
            return new SecretStore(path, new SecretsDocument());
        }

        File.SetUnixFileMode(path, OwnerOnly);
        try
        {
            var document = JsonSerializer.Deserialize(File.ReadAllText(path), SecretsJsonContext.Default.SecretsDocument)
                ?? new SecretsDocument();
            return new SecretStore(path, document);
        }
        catch (JsonException ex)
        {
            throw new AppHostException($"{path} is not valid JSON ({ex.Message}); fix or delete it.", ex);
        }
    }

    /// <summary>The local cluster's superuser password; null until the cluster was initialised.</summary>
    public string? PostgresSuperuserPassword => _document.PostgresSuperuserPassword;

    public string GetOrCreatePostgresSuperuserPassword()
    {
        if (_document.PostgresSuperuserPassword is null)
        {
            _document.PostgresSuperuserPassword = NewPassword();
            Save();
        }

        return _document.PostgresSuperuserPassword;
    }

    /// <summary>The suite's identity signing key (<c>Lifeline:Identity:SigningKey</c>), shared by the gateway and the services.</summary>
    public string GetOrCreateIdentitySigningKey()
    {
        if (_document.IdentitySigningKey is null)
        {
            _document.IdentitySigningKey = RandomNumberGenerator.GetString(Alphabet, 48);
            Save();
        }

        return _document.IdentitySigningKey;
    }

    public string GetOrCreateRolePassword(string role)
    {
        if (!_document.RolePasswords.TryGetValue(role, out var password))
        {
            password = NewPassword();
            _document.RolePasswords[role] = password;
            Save();
        }

        return password;
    }

    /// <summary>The gateway's development API keys: those in secrets.json, plus any of <paramref name="wanted"/> not there yet.</summary>
    public IReadOnlyList<ApiKeySecret> GetOrCreateApiKeys(IEnumerable<(string Name, string Tenant, string Role)> wanted)
    {
        var changed = false;
        foreach (var (name, tenant, role) in wanted)
        {
            if (_document.ApiKeys.All(k => k.Name != name))
            {
                _document.ApiKeys.Add(new ApiKeySecret { Name = name, Tenant = tenant, Role = role, Key = "llk_" + RandomNumberGenerator.GetString(Alphabet, 40) });
                changed = true;
            }
        }

        if (changed)
        {
            Save();
        }

        return _document.ApiKeys;
    }

    private static string NewPassword() => RandomNumberGenerator.GetString(Alphabet, 32);

    private void Save() => WriteOwnerOnly(_path, stream => JsonSerializer.Serialize(stream, _document, SecretsJsonContext.Default.SecretsDocument));

    /// <summary>Written to a 0600 temporary file, then renamed over the old one: never readable by others, never half-written.</summary>
    public static void WriteOwnerOnly(string path, Action<Stream> write)
    {
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        var temporary = path + ".tmp";
        using (var stream = new FileStream(temporary, new FileStreamOptions
        {
            Mode = FileMode.Create,
            Access = FileAccess.Write,
            UnixCreateMode = OwnerOnly,
        }))
        {
            write(stream);
            stream.Flush(flushToDisk: true);
        }

        File.SetUnixFileMode(temporary, OwnerOnly);
        File.Move(temporary, path, overwrite: true);
    }
}

internal sealed class SecretsDocument
{
    public string? PostgresSuperuserPassword { get; set; }

    public string? IdentitySigningKey { get; set; }

    private Dictionary<string, string>? _rolePasswords;
    private List<ApiKeySecret>? _apiKeys;

    // A file written by an older apphost may lack a section or hold null for it: both read as empty.
    public Dictionary<string, string> RolePasswords
    {
        get => _rolePasswords ??= new(StringComparer.Ordinal);
        init => _rolePasswords = value;
    }

    public List<ApiKeySecret> ApiKeys
    {
        get => _apiKeys ??= [];
        init => _apiKeys = value;
    }
}

/// <summary>A gateway API key for local development, bound to one tenant and role.</summary>
internal sealed class ApiKeySecret
{
    public string Name { get; set; } = "";

    public string Tenant { get; set; } = "";

    public string Role { get; set; } = "";

    public string Key { get; set; } = "";
}

[JsonSourceGenerationOptions(WriteIndented = true, PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase)]
[JsonSerializable(typeof(SecretsDocument))]
internal sealed partial class SecretsJsonContext : JsonSerializerContext;
