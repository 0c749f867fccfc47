namespace Lifeline.Testing;

/// <summary>
/// Every async test carries a timeout (<c>[Fact(Timeout = TestTimeouts.Default)]</c>): a test that hangs fails
/// with its own name within minutes instead of holding the run until CI's limit. build/test.sh adds a last
/// guard for what a test's timeout cannot catch (a hung fixture, a synchronous test): the test host is stopped
/// when one test runs longer than <see cref="HangMinutes"/> minutes, naming that test.
/// </summary>
public static class TestTimeouts
{
    /// <summary>Any test: 5 minutes, several times the slowest test's time on a loaded two-core machine.</summary>
    public const int Default = 300_000;

    /// <summary>What build/test.sh passes as <c>--blame-hang-timeout</c> (kept in step by hand).</summary>
    public const int HangMinutes = 8;
}
