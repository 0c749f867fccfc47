using Grpc.Core;

namespace Lifeline.ServiceDefaults.Errors;

/// <summary>
/// A domain refusal. Services throw these; <see cref="ErrorMappingInterceptor"/> turns them into a
/// gRPC status with <c>google.rpc</c> details in one place.
/// </summary>
public abstract class LifelineException(string message) : Exception(message)
{
    /// <summary>The gRPC status code this refusal maps to.</summary>
    public abstract StatusCode Code { get; }

    /// <summary>Stable machine-readable reason (ErrorInfo.reason), e.g. <c>STALE_FENCING_TOKEN</c>.</summary>
    public abstract string Reason { get; }

    /// <summary>Extra ErrorInfo metadata (ids, current state, ...).</summary>
    public IDictionary<string, string> Metadata { get; } = new Dictionary<string, string>();
}

/// <summary>
/// Invalid input: INVALID_ARGUMENT with BadRequest field violations. However many fields were wrong, an answer
/// lists at most <see cref="MaxListed"/> of them (each field and description cut to a bounded length) and says
/// how many there were: an error must stay far below any proxy's header limits (the status travels in HTTP/2
/// trailers), or one bad request could break the connection other callers share.
/// </summary>
public sealed class ValidationException : LifelineException
{
    /// <summary>Most violations one answer lists.</summary>
    public const int MaxListed = 20;

    private const int MaxFieldLength = 200;
    private const int MaxDescriptionLength = 300;

    public ValidationException(IReadOnlyList<FieldViolation> violations, int? total = null)
        : this(Cap(violations), Math.Max(total ?? violations.Count, violations.Count))
    {
    }

    private ValidationException(FieldViolation[] listed, int total) : base(Describe(listed, total))
    {
        Violations = listed;
        Total = total;
    }

    /// <summary>The violations listed (at most <see cref="MaxListed"/>).</summary>
    public IReadOnlyList<FieldViolation> Violations { get; }

    /// <summary>How many violations the request had in all.</summary>
    public int Total { get; }

    public override StatusCode Code => StatusCode.InvalidArgument;
    public override string Reason => "INVALID_ARGUMENT";

    public static ValidationException For(string field, string description) => new([new FieldViolation(field, description)]);

    private static FieldViolation[] Cap(IReadOnlyList<FieldViolation> violations) =>
        violations.Take(MaxListed)
            .Select(v => new FieldViolation(Clip(v.Field, MaxFieldLength), Clip(v.Description, MaxDescriptionLength)))
            .ToArray();

    internal static string Clip(string value, int max) => value.Length <= max ? value : value[..max] + "…";

    private static string Describe(FieldViolation[] listed, int total)
    {
        if (total == 1 && listed.Length == 1)
        {
            return $"{listed[0].Field}: {listed[0].Description}";
        }
        var shown = string.Join("; ", listed.Take(3).Select(v => $"{v.Field}: {v.Description}"));
        return total > 3 ? $"{total} invalid fields: {shown}; and {total - 3} more (see BadRequest details)" : $"{total} invalid fields: {shown}";
    }
}

/// <summary>One invalid field of a request.</summary>
public sealed record FieldViolation(string Field, string Description);

/// <summary>The addressed resource does not exist (for this tenant): NOT_FOUND.</summary>
public sealed class NotFoundException : LifelineException
{
    public NotFoundException(string resourceType, string resourceId)
        : base($"{resourceType} '{resourceId}' was not found.")
    {
        ResourceType = resourceType;
        ResourceId = resourceId;
        Metadata["resource_type"] = resourceType;
        Metadata["resource_id"] = resourceId;
    }

    public string ResourceType { get; }
    public string ResourceId { get; }
    public override StatusCode Code => StatusCode.NotFound;
    public override string Reason => ResourceType.ToUpperInvariant() + "_NOT_FOUND";
}

/// <summary>The system is not in a state that allows the operation: FAILED_PRECONDITION.</summary>
public class PreconditionFailedException(string reason, string message) : LifelineException(message)
{
    public override StatusCode Code => StatusCode.FailedPrecondition;
    public override string Reason { get; } = reason;
}

/// <summary>A concurrent change won; retrying the whole operation may succeed: ABORTED with RetryInfo.</summary>
public sealed class ConcurrencyConflictException(string message, TimeSpan retryAfter, string reason = "CONCURRENT_MODIFICATION")
    : LifelineException(message)
{
    public TimeSpan RetryAfter { get; } = retryAfter;
    public override StatusCode Code => StatusCode.Aborted;
    public override string Reason { get; } = reason;
}

/// <summary>Stored data failed its integrity check (checksum mismatch, undecodable bytes): DATA_LOSS. Never served.</summary>
public sealed class DataLossException(string reason, string message) : LifelineException(message)
{
    public override StatusCode Code => StatusCode.DataLoss;
    public override string Reason { get; } = reason;
}

/// <summary>An operation ran past its own time limit and was undone: DEADLINE_EXCEEDED.</summary>
public sealed class OperationTimedOutException(string reason, string message) : LifelineException(message)
{
    public override StatusCode Code => StatusCode.DeadlineExceeded;
    public override string Reason { get; } = reason;
}

/// <summary>The caller is known but may not do this: PERMISSION_DENIED.</summary>
public sealed class PermissionDeniedException(string reason, string message) : LifelineException(message)
{
    public override StatusCode Code => StatusCode.PermissionDenied;
    public override string Reason { get; } = reason;
}
