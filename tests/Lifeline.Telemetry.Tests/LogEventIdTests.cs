using System.Reflection;
using System.Runtime.Loader;
using System.Text.RegularExpressions;

namespace Lifeline.Telemetry.Tests;

/// <summary>
/// Every log message of the suite has a stable event id from its component's range, unique across the suite, so an
/// operator can alert on or search for one message by its id alone. Ranges: queue 1000–1999, registry 2000–2999,
/// checkpoint 3000–3999, recovery 4000–4999, backup 5000–5999, gateway 6000–6999, .NET worker library 7000–7999,
/// demo worker 8000–8999, ServiceDefaults 9000–9999 (services/Lifeline.ServiceDefaults/README.md, Telemetry).
/// </summary>
public sealed partial class LogEventIdTests
{
    /// <summary>Each component's project folder, assembly and event id range.</summary>
    public static readonly (string Project, string Assembly, int First, int Last)[] Components =
    [
        ("services/Lifeline.Queue", "Lifeline.Queue", 1000, 1999),
        ("services/Lifeline.Registry", "Lifeline.Registry", 2000, 2999),
        ("services/Lifeline.Checkpoint", "Lifeline.Checkpoint", 3000, 3999),
        ("services/Lifeline.Recovery", "Lifeline.Recovery", 4000, 4999),
        ("services/Lifeline.Backup", "Lifeline.Backup", 5000, 5999),
        ("gateway/Lifeline.Gateway", "Lifeline.Gateway", 6000, 6999),
        ("services/workers/dotnet/Lifeline.Worker", "Lifeline.Worker", 7000, 7999),
        ("services/workers/dotnet/Lifeline.DemoWorker", "Lifeline.DemoWorker", 8000, 8999),
        ("services/Lifeline.ServiceDefaults", "Lifeline.ServiceDefaults", 9000, 9999),
    ];

    private sealed record LogMethod(string Assembly, string Method, int? EventId);

    [Fact]
    public void Every_LoggerMessage_of_the_compiled_assemblies_has_an_event_id_in_its_range_unique_across_the_suite()
    {
        var methods = Components.SelectMany(c => LogMethodsOf(BuiltAssemblies.Find(c.Project, c.Assembly))).ToList();
        // The scan finds what it should: the suite logs from every service (a broken scan would find nothing and pass).
        Assert.True(methods.Count >= 80, $"only {methods.Count} [LoggerMessage] methods found");
        foreach (var component in Components.Where(c => c.Assembly != "Lifeline.DemoWorker"))
        {
            Assert.Contains(methods, m => m.Assembly == component.Assembly);
        }

        var problems = new List<string>();
        foreach (var method in methods)
        {
            var (_, _, first, last) = Components.Single(c => c.Assembly == method.Assembly);
            if (method.EventId is not { } id || id <= 0)
            {
                problems.Add($"{method.Method} ({method.Assembly}) has no event id");
            }
            else if (id < first || id > last)
            {
                problems.Add($"{method.Method} ({method.Assembly}) has event id {id}, outside {first}–{last}");
            }
        }
        foreach (var duplicate in methods.Where(m => m.EventId > 0).GroupBy(m => m.EventId).Where(g => g.Count() > 1))
        {
            problems.Add($"event id {duplicate.Key} is used by {string.Join(", ", duplicate.Select(m => m.Method))}");
        }
        Assert.True(problems.Count == 0, string.Join(Environment.NewLine, problems));
    }

    [Fact]
    public void No_source_file_logs_without_a_LoggerMessage_event_id()
    {
        var root = BuiltAssemblies.RepositoryRoot;
        var files = Components.SelectMany(c => Directory.EnumerateFiles(Path.Combine(root, c.Project), "*.cs", SearchOption.AllDirectories))
            .Where(f => !f.Contains($"{Path.DirectorySeparatorChar}obj{Path.DirectorySeparatorChar}", StringComparison.Ordinal)
                        && !f.Contains($"{Path.DirectorySeparatorChar}bin{Path.DirectorySeparatorChar}", StringComparison.Ordinal))
            .Distinct()
            .ToList();
        Assert.True(files.Count > 100, $"only {files.Count} source files found under {root}");
        var offences = new List<string>();
        foreach (var file in files)
        {
            var lines = File.ReadAllLines(file);
            for (var i = 0; i < lines.Length; i++)
            {
                if (DirectLogCall().IsMatch(lines[i]) && !lines[i].TrimStart().StartsWith("//", StringComparison.Ordinal))
                {
                    offences.Add($"{Path.GetRelativePath(root, file)}:{i + 1}: {lines[i].Trim()}");
                }
            }
        }
        Assert.True(offences.Count == 0, "log through a [LoggerMessage(EventId = …)] method instead:" + Environment.NewLine + string.Join(Environment.NewLine, offences));
    }

    [Fact]
    public void The_direct_log_call_pattern_catches_what_it_must_and_spares_LoggerMessage_methods()
    {
        Assert.Matches(DirectLogCall(), "logger.LogWarning(\"lost {Worker}\", id);");
        Assert.Matches(DirectLogCall(), "_logger.LogError(ex, \"failed\");");
        Assert.Matches(DirectLogCall(), "Logger.Log(LogLevel.Information, \"x\");");
        Assert.Matches(DirectLogCall(), "logger.LogInformation(new EventId(5), \"x\");");
        Assert.DoesNotMatch(DirectLogCall(), "LogLost(logger, id, tenant);");
        Assert.DoesNotMatch(DirectLogCall(), "private static partial void LogWarningRaised(ILogger logger);");
    }

    // logger.LogX( / _logger.LogX( / Logger.Log( — the extension methods that take a message string, with or without an EventId.
    [GeneratedRegex(@"\b_?[Ll]ogger\s*\.\s*Log(Trace|Debug|Information|Warning|Error|Critical)?\s*\(")]
    private static partial Regex DirectLogCall();

    private static List<LogMethod> LogMethodsOf(string path)
    {
        var context = new ScanContext(Path.GetDirectoryName(path)!);
        try
        {
            var assembly = context.LoadFromAssemblyPath(path);
            var name = assembly.GetName().Name!;
            var found = new List<LogMethod>();
            foreach (var type in LoadableTypes(assembly))
            {
                foreach (var method in type.GetMethods(BindingFlags.Public | BindingFlags.NonPublic | BindingFlags.Static | BindingFlags.Instance | BindingFlags.DeclaredOnly))
                {
                    var attribute = method.GetCustomAttributesData()
                        .FirstOrDefault(a => a.AttributeType.FullName == "Microsoft.Extensions.Logging.LoggerMessageAttribute");
                    if (attribute is not null)
                    {
                        found.Add(new LogMethod(name, $"{type.FullName}.{method.Name}", EventIdOf(attribute)));
                    }
                }
            }
            return found;
        }
        finally
        {
            context.Unload();
        }
    }

    private static int? EventIdOf(CustomAttributeData attribute)
    {
        foreach (var named in attribute.NamedArguments)
        {
            if (named.MemberName == "EventId")
            {
                return (int)named.TypedValue.Value!;
            }
        }
        var parameters = attribute.Constructor.GetParameters();
        for (var i = 0; i < parameters.Length; i++)
        {
            if (parameters[i].Name == "eventId")
            {
                return (int)attribute.ConstructorArguments[i].Value!;
            }
        }
        return null;
    }

    private static IEnumerable<Type> LoadableTypes(Assembly assembly)
    {
        try
        {
            return assembly.GetTypes();
        }
        catch (ReflectionTypeLoadException e)
        {
            return e.Types.OfType<Type>();
        }
    }

    /// <summary>Loads an assembly with its dependencies from its own build folder; the shared framework from the default context.</summary>
    private sealed class ScanContext(string directory) : AssemblyLoadContext(isCollectible: true)
    {
        protected override Assembly? Load(AssemblyName name)
        {
            var local = Path.Combine(directory, name.Name + ".dll");
            if (File.Exists(local))
            {
                return LoadFromAssemblyPath(local);
            }
            return null; // the shared framework, from the default context
        }
    }
}
