"""English for the Chinese texts the servers put in errors and failed tasks.

Only texts read in the servers' own source are listed, each under the file that sends
it. `explain` finds the longest listed text inside a server's text (servers append ids,
counts or the relay's ``result`` to them), so ``执行超时 5 分钟`` and ``task_no_found ``
variants still match. The server's text itself is never changed: exceptions keep it
verbatim in ``.description`` and show ``原文 (English)`` in their message.
"""

from __future__ import annotations

import re

__all__ = ["explain", "with_english"]

_GLOSSARY: dict[str, str] = {
    # novicezk SubmitController.java, DiscordInstanceImpl.java, TaskServiceImpl.java,
    # TaskTimeoutSchedule.java, result/Message.java
    "prompt不能为空": "the prompt is empty",
    "可能包含敏感词": "the prompt may contain a banned word",
    "base64格式错误": "an image is not a valid base64 data URI",
    "base64不能为空": "no image was sent",
    "base64List参数错误": "the image list is invalid",
    "dimensions参数错误": "dimensions is invalid",
    "content参数错误": "the content parameter is invalid",
    "taskId不能为空": "taskId is empty",
    "action参数错误": "the action parameter is invalid",
    "关联任务不存在或已失效": "the referenced task does not exist or has expired",
    "任务状态错误": "the task is not in a state that allows this",
    "关联任务不允许执行变化": "the referenced task does not allow this change",
    "队列已满": "the queue is full; try again later",
    "提交失败，系统异常": "the submit failed with a server error",
    "无可用的账号实例": "the server has no Midjourney account available",
    "账号不可用": "the account is not available",
    "任务超时": "the task timed out",
    "上传图片到discord失败": "uploading the image to Discord failed",
    "发送图片消息到discord失败": "sending the image message to Discord failed",
    "数据未找到": "not found",
    "校验错误": "validation error",
    "系统异常": "server error",
    # trueai Controllers/SubmitController.cs, TaskController.cs, SimpleAuthMiddleware.cs,
    # Filters/CustomLogicExceptionFilterAttribute.cs, Filters/CustomActionFilterAttribute.cs,
    # Services/TaskService.cs, Services/DiscordService.cs, DiscordAccountInitializer.cs
    "并发数已达上限": "this key's limit of concurrent tasks is reached; retry when one finishes",
    "队列数已达上限": "this key's limit of queued tasks is reached; retry when one starts",
    "今日绘图次数已达上限": "today's limit of drawings is reached",
    "总绘图次数已达上限": "the total limit of drawings is reached",
    "账号已被临时封锁": "the account is temporarily blocked for using banned words",
    "服务暂不可用": "the service is unavailable; contact the administrator",
    "State参数过长": "state is too long (255 characters at most)",
    "NotifyHook参数过长": "notifyHook is too long (2000 characters at most)",
    "禁止上传": "this server refuses uploaded (base64) images; send image URLs instead",
    "演示模式，禁止操作": "demo mode: only an administrator may do this",
    "未知的 Action 类型": "unknown action type (the customId is not one this server handles)",
    "参数错误": "invalid parameters",
    "提交Imagine任务异常": "the imagine submit failed on the server",
    "实例不存在或不可用": "the account instance does not exist or is unavailable",
    "图片参数错误，2~5张图片": "blend needs 2 to 5 images",
    "base64或link不能为空": "neither an image nor a link was sent",
    "链接格式错误": "the link is not a valid URL",
    "任务类型错误": "wrong task type for this action",
    "该任务不支持重新生成": "this task cannot be rerolled",
    "视频功能未启用": "video is not enabled on this server",
    "Prompt 不能为空": "the prompt is empty",
    "image或prompt不能为空": "the image or the prompt is empty",
    "当前账号不支持 remix": "the account does not have remix enabled",
    "当前账号不支持编辑/重绘任务": "the account does not support edit or retexture",
    "目标任务不存在": "the target task does not exist",
    "任务不存在": "the task does not exist",
    "未找到 seed": "no seed was found for this task",
    "取消任务": "the task was cancelled",
    "执行超时": "the task ran too long and was stopped",
    "任务提交超时": "the task waited too long in the queue",
    "账号已禁用": "the account behind this key is disabled",
    "账号无权限": "the account has no permission for this",
    "未登录": "not logged in (the key was not recognised)",
    "操作失败": "the operation failed",
    "令牌错误": "wrong token",
    "请重新登录": "log in again (the key was not accepted)",
    "您无权限访问": "this key has no permission for this",
    # new-api relay/mjproxy_handler.go, service/midjourney.go, middleware/auth.go,
    # controller/relay.go
    "上游任务超时": "the upstream task timed out",
    "该任务所属渠道已被禁用": "the channel this task was sent through is disabled",
    "当前分组负载已饱和": "this group is at capacity; try again later",
    "您的 IP 不在令牌允许访问的列表中": "your IP address is not allowed for this key",
}
# Longest first, so "关联任务状态错误" is explained as a whole and "任务超时，自动取消"
# as "任务超时" rather than by a shorter text inside it.
_ORDERED = sorted(_GLOSSARY.items(), key=lambda item: len(item[0]), reverse=True)
_CJK = re.compile(r"[\u3000-\u303f\u3400-\u9fff\uff00-\uffef]")


def explain(text: str | None) -> str | None:
    """English for a server's Chinese *text*, or None when the glossary has none."""
    if not text or not _CJK.search(text):
        return None
    for chinese, english in _ORDERED:
        if chinese in text:
            return english
    return None


def with_english(text: str) -> str:
    """*text*, followed by its English in parentheses when the glossary has it."""
    english = explain(text)
    return f"{text} ({english})" if english else text
